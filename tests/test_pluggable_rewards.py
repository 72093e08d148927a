"""Pluggable rewards: a tiny policy trained against each reward kind (the VADER utility, a local
classifier's label, a Python function, the study's own reward model) earns more of it; a bad
reward fails at once with a one-line error naming the cause."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2ForSequenceClassification

from rlhf.errors import UserError
from rlhf.policy import PolicyConfig, prompts_from_texts, train_policy
from rlhf.results import PolicyResult
from rlhf.rewards import is_lexicon, make_reward, vader_utility
from rlhf.rundir import RunDir
from rlhf.tokenizer import load_tokenizer, save_tokenizer

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = "python:tests.reward_functions"


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> RunDir:
    """The tiny study's models and corpus, copied so that training writes nothing into the shared run."""
    _, run_dir, _ = tiny_run
    copy = RunDir(tmp_path / "tiny")
    shutil.copytree(run_dir.root, copy.root, ignore=shutil.ignore_patterns("activations", "saes", "report"))
    return copy


@pytest.fixture(scope="module")
def classifier(tiny_run, tmp_path_factory) -> Path:
    """A one-layer GPT-2 classifier over the study's tokenizer, NEGATIVE / POSITIVE by the VADER sign
    of short corpus snippets (a few seconds of training): the stand-in for the paper's DistilBERT."""
    _, run_dir, _ = tiny_run
    out = tmp_path_factory.mktemp("classifier")
    tokenizer = load_tokenizer(run_dir.base)
    snippets = prompts_from_texts(run_dir.texts("train"), 3000, seed=0, max_words=12)
    texts, labels = zip(*[(t, int(u > 0)) for t, u in zip(snippets, vader_utility(snippets)) if u != 0])
    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(GPT2Config(
        vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=1, n_head=2, num_labels=2,
        id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1},
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    targets = torch.tensor(labels)
    for _ in range(3):
        for start in range(0, len(texts), 64):
            batch = tokenizer(list(texts[start : start + 64]), padding=True, return_tensors="pt")
            loss = torch.nn.functional.cross_entropy(model(**batch).logits, targets[start : start + 64])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.save_pretrained(out)
    save_tokenizer(tokenizer, out)
    return out


def train_with(run_dir: RunDir, reward: str, label: str = "", steps: int = 40) -> PolicyResult:
    cfg = PolicyConfig(reward=reward, reward_label=label, beta=0.0, learning_rate=1e-3, max_steps=steps,
                       kl_budget=0.0, kl_every=0, batch_size=16, num_generations=4, n_prompts=64,
                       n_eval_prompts=64, max_completion_length=8, save_every=1000)
    result = train_policy(cfg, run_dir)
    assert result is not None and result.reward == reward
    assert PolicyResult.load(run_dir).reward == reward  # the run directory records which reward trained it
    return result


def assert_rises(result: PolicyResult, margin: float) -> None:
    assert result.policy.mean_reward > result.base.mean_reward + margin, (result.base, result.policy)
    rewards = [v for _, v in result.curves["reward"]]
    assert sum(rewards[-10:]) / 10 > sum(rewards[:10]) / 10
    assert result.curves["repeated_bigrams"]  # logged for every reward kind


def test_vader_reward_rises(run_copy):
    assert_rises(train_with(run_copy, "vader"), 0.25)


def test_classifier_label_reward_rises(run_copy, classifier):
    result = train_with(run_copy, f"model:{classifier}", label="POSITIVE")
    assert result.config.reward_label == "POSITIVE"
    assert_rises(result, 0.3)


def test_python_reward_rises(run_copy):
    assert_rises(train_with(run_copy, f"{FUNCTIONS}:count_and", steps=25), 1.0)


def test_study_reward_model_rises(run_copy):
    assert_rises(train_with(run_copy, "study:reward_bradley_terry"), 0.3)


def test_only_vader_is_the_lexicon():
    assert is_lexicon("vader")
    assert not any(is_lexicon(s) for s in ("model:x", f"{FUNCTIONS}:count_and", "study:reward_bradley_terry"))


def one_line_error(spec: str, run_dir: RunDir, match: str, label: str = "") -> str:
    with pytest.raises(UserError, match=match) as caught:
        make_reward(spec, run_dir, label=label)(prompts=["the film was", "the plot"], completions=["great .", "bad ."])
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_classifier_label_errors(run_copy, classifier, tmp_path):
    message = one_line_error(f"model:{classifier}", run_copy, "has no label 'HAPPY'", label="HAPPY")
    assert "['NEGATIVE', 'POSITIVE']" in message
    one_line_error(f"model:{classifier}", run_copy, r"2 outputs: set reward_label to one of \['NEGATIVE', 'POSITIVE'\]")
    one_line_error(f"model:{tmp_path / 'nowhere'}", run_copy, "no such directory")
    one_line_error(f"model:{run_copy.base}", run_copy, "is no sequence classifier or reward model")  # a causal LM
    reward = make_reward(f"model:{classifier}", run_copy, label="POSITIVE")
    assert len(reward(prompts=["the film was"] * 3, completions=["great .", "bad .", ""])) == 3


def test_python_reward_errors(run_copy):
    one_line_error(f"{FUNCTIONS}:raises", run_copy,
                   f"reward function {FUNCTIONS}:raises raised ValueError: no reward today")
    one_line_error(f"{FUNCTIONS}:wrong_length", run_copy, "returned 3 rewards for 2 completions")
    one_line_error(f"{FUNCTIONS}:nan", run_copy, "returned nan for completion 0")
    one_line_error(f"{FUNCTIONS}:missing", run_copy, "tests.reward_functions.missing does not exist")
    one_line_error(f"{FUNCTIONS}:not_callable", run_copy, "is not callable")
    one_line_error("python:tests.no_such_module:f", run_copy, "cannot import tests.no_such_module")


def test_study_reward_errors(run_copy):
    shutil.rmtree(run_copy.model("reward_categorical"), ignore_errors=True)
    one_line_error("study:reward_categorical", run_copy, "run the hidden_context stage first")
    one_line_error("study:reward_of_the_gods", run_copy, "must be 'study:reward_<a reward model of hidden_context.kinds>'")


def test_cli_reports_a_raising_reward_and_exits_2(run_copy):
    config = run_copy.root.parent / "raising.toml"
    tiny = (ROOT / "configs" / "tiny.toml").read_text()
    config.write_text(tiny.replace('runs_dir = "runs"\n', 'runs_dir = "runs"\nstages = ["corpus", "tokenizer", "pretrain", "policy"]\n', 1)
                      .replace("[policy]\n", f'[policy]\nreward = "{FUNCTIONS}:raises"\n', 1))
    trained = (run_copy.training / "policy.json").read_text()
    done = subprocess.run([sys.executable, "-m", "study", "run", "--config", str(config), "--runs-dir",
                           str(run_copy.root.parent)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"error: reward function {FUNCTIONS}:raises raised ValueError: no reward today" in done.stderr
    assert "Traceback" not in done.stderr
    # The policy trained before is left as it was.
    assert (run_copy.training / "policy.json").read_text() == trained and (run_copy.policy / "model.safetensors").exists()


def test_a_new_reward_kind_is_one_module_and_one_registry_entry(run_copy, monkeypatch):
    """tests/reward_kind_example.py registered with one entry: a config naming it loads (and a bad target
    is refused at load), the policy trains against it and says the word more, and the result and the
    report name the reward."""
    from rlhf.reward_kinds import REWARD_KINDS, RewardKind
    from study.config import config_from_dict
    from study.report import build_report

    monkeypatch.setitem(REWARD_KINDS, "word", RewardKind("tests.reward_kind_example:build", "word:<a word>", r"\w+"))
    assert config_from_dict({"policy": {"reward": "word:and"}}).policy.reward == "word:and"
    with pytest.raises(UserError, match="policy.reward must be 'word:<a word>'; got 'word:two words'"):
        config_from_dict({"policy": {"reward": "word:two words"}})
    assert_rises(train_with(run_copy, "word:and", steps=25), 1.0)
    assert "word:and" in build_report(run_copy).read_text()

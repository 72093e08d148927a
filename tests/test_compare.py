"""Bring your own models: ``python -m study compare`` on a base and a fine-tune made here, and
adopting a fine-tune (``from_model``) that is not one of the base."""

import hashlib
import json
import shutil
from dataclasses import replace

import pytest
import torch
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, Qwen3Config, Qwen3ForCausalLM

from analysis.results import DivergenceResult, RewardAttributionResult
from rlhf.adopt import adopt
from rlhf.errors import UserError
from rlhf.policy import train_dpo
from rlhf.policy.sft import sft_stage
from rlhf.results import ConversionResult, DPOResult, PolicyResult
from rlhf.rundir import RunDir
from rlhf.tokenizer import load_tokenizer, save_tokenizer
from study.__main__ import main
from study.compare import ANALYSIS, LEXICON, compare_config
from study.config import load_config
from study.pipeline import run_study
from study.report import build_report
from study.stages import STAGES

# Small enough for a test: a few hundred texts, dictionaries and a crosscoder on ~20k tokens.
# The pair's reward is a Python function, so the lexicon stages (run on the tiny study and the
# real-model test) are left out here.
REWARD = "python:tests.reward_functions:count_and"
SMALL = (
    "corpus.dataset.n_train=300", "corpus.dataset.n_val=40", "corpus.dataset.n_test=40",
    "activations.train_texts=300", "activations.held_out_texts=40",
    "dictionaries.training_tokens=20000", "dictionaries.batch_size=512", "dictionaries.widths=[1.0]",
    "sae_quality.held_out_texts=40", "mmcs.random_draws=2", "mmcs.seed_null=false",
    "policy.n_eval_prompts=16", "policy.max_completion_length=8",
    "model_diffing.seeds=[0]", "model_diffing.top_k=3", "model_diffing.n_prompts=8", "model_diffing.sampling_seeds=[0]",
    "model_diffing.max_new_tokens=8", "model_diffing.methods.kl.texts=20", "model_diffing.methods.activation_difference_lens.texts=20", "model_diffing.cards=1",
    "reward_attribution.n_prompts=8", "reward_attribution.max_new_tokens=8", "reward_attribution.ks=[1, 3, 10]",
    "reward_attribution.intervention_k=10", "reward_attribution.dictionaries=[\"sae_policy\", \"sae_base\"]",
    "model_diffing.crosscoder.training_tokens=20000", "model_diffing.methods.difference_dictionary.tokens=20000", "model_diffing.methods.difference_sae.tokens=20000", "model_diffing.crosscoder.batch_size=512",
    "model_diffing.methods.stagewise_sae.tokens=20000",
    "model_diffing.methods.activation_difference_lens.steering_alphas=[1.0]",
    "model_diffing.methods.logit_amplification.alphas=[2.0]",
)


def _lm_steps(model: torch.nn.Module, tokenizer, texts: list[str], steps: int, seed: int) -> None:
    """A few steps of next-token training on ``texts`` (only the parameters that require grad move)."""
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=3e-3)
    model.train()
    for _ in range(steps):
        rows = [texts[i] for i in torch.randint(len(texts), (16,), generator=gen).tolist()]
        batch = tokenizer(rows, return_tensors="pt", padding=True, truncation=True, max_length=48)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        model(**batch, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()


def qwen3(vocab: int, hidden: int) -> Qwen3ForCausalLM:
    return Qwen3ForCausalLM(Qwen3Config(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=4,
                                        num_key_value_heads=2, head_dim=16, intermediate_size=2 * hidden,
                                        max_position_embeddings=256))


@pytest.fixture(scope="module")
def pair(tmp_path_factory, local_hub):
    """A Qwen3 base (not the GPT-NeoX of the embedded study: the comparison reads any architecture the
    bridge converts) trained briefly on the corpus, and a fine-tune of it in which only layer 1's MLP
    moved (trained on the positive half of the reviews). Returns (data file, base dir, fine-tune dir)."""
    data, hub_model = local_hub
    root = tmp_path_factory.mktemp("pair")
    texts = [json.loads(line)["text"] for line in data.read_text().splitlines()]
    tokenizer = load_tokenizer(hub_model)
    torch.manual_seed(0)
    base = qwen3(320, 64)  # the hub stand-in's vocabulary size
    _lm_steps(base, tokenizer, texts, steps=40, seed=0)
    base.save_pretrained(root / "base")
    save_tokenizer(tokenizer, root / "base")
    for name, param in base.named_parameters():
        param.requires_grad = name.startswith("model.layers.1.mlp.")
    positive = [t for t in texts if any(w in t for w in ("great", "superb", "wonderful", "excellent", "loved"))]
    _lm_steps(base, tokenizer, positive or texts, steps=30, seed=1)
    base.save_pretrained(root / "tuned")
    save_tokenizer(tokenizer, root / "tuned")
    return data, root / "base", root / "tuned"


def _digest(directory) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())).hexdigest()


def test_compare_analyses_a_pair_trained_elsewhere(tmp_path, pair, capsys):
    data, base, tuned = pair
    argv = ["compare", "--base", str(base), "--policy", str(tuned), "--corpus", str(data), "--name", "cmp",
            "--runs-dir", str(tmp_path), "--reward", REWARD, *[a for s in SMALL for a in ("--set", s)]]
    assert main(argv) == 0
    assert f"skipping {', '.join(LEXICON)}" in capsys.readouterr().out
    run = RunDir(tmp_path / "cmp")
    assert (run.report / "index.html").exists()
    for stage in STAGES:
        assert run.manifest(stage.name).exists() == (stage.name in ANALYSIS), stage.name
        assert all(p.exists() for p in stage.outputs(run)) or stage.name not in ANALYSIS, stage.name
    policy = PolicyResult.load(run)
    assert policy.steps == 0 and policy.config.from_model == str(tuned) and policy.config.reward == REWARD
    # Only layer 1's MLP was trained: divergence is zero everywhere else.
    d = DivergenceResult.load(run)
    assert d.total[0] == 0 and d.total[1] > 0 and d.ranking[0] == 1
    assert {c for c, row in d.layers[1].items() if row.divergence > 0} == {"mlp"}
    assert all(row.divergence == 0 for row in d.outside.values())
    assert set(ConversionResult.load(run).models) == {"base", "policy"}
    page = (run.report / "index.html").read_text()
    assert f"Adopted from {tuned}" in page and REWARD in page
    assert "Not diffed: blocks.0.hook_mlp_out" in page  # layer 0 is before the only changed weights
    # The python: reward has no token-level utility: reward attribution reads the log-ratio, and the sampled reward.
    attribution = RewardAttributionResult.load(run)
    assert attribution.target == "log_ratio" and all(g.gain > 0 for g in attribution.gain), "the fine-tune's own tokens"
    assert [i.seed for i in attribution.interventions] == list(attribution.seeds)
    assert "log-ratio" in page and "latents removed" in page

    # The kept config repeats the comparison: every stage is found finished.
    lines = []
    run_study(load_config(run.config_file), log=lines.append)
    assert [line for line in lines if line.endswith("done already, skipped")] == \
        [f"[{stage}] done already, skipped" for stage in ANALYSIS]
    assert not [line for line in lines if line.endswith("running")]

    # A fine-tune of another architecture is refused with exit status 2; the adopted policy stays as it was.
    other = tmp_path / "other"
    GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=320, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=256)).save_pretrained(other)
    before = _digest(run.policy)
    argv[argv.index(str(tuned))] = str(other)
    assert main(argv) == 2
    assert _digest(run.policy) == before


def test_adopting_a_model_that_is_no_fine_tune_of_the_base(tmp_path, pair):
    _, base, tuned = pair
    run = RunDir(tmp_path / "run")
    shutil.copytree(base, run.base)
    small = tmp_path / "small"
    qwen3(320, 32).save_pretrained(small)
    with pytest.raises(UserError, match="policy.from_model = .* is not a fine-tune of the base model .*hidden_size is 32"):
        adopt(str(small), run, "policy", "policy.from_model")
    with pytest.raises(UserError, match="dpo.from_model = .*is not a model directory"):
        adopt(str(tmp_path / "absent"), run, "dpo", "dpo.from_model")
    # Same weights, another vocabulary: the token ids would mean other words.
    renamed = tmp_path / "renamed"
    shutil.copytree(tuned, renamed)
    vocab = json.loads((renamed / "tokenizer.json").read_text())
    ids = vocab["model"]["vocab"]
    a, b = sorted(ids)[40:42]
    ids[a], ids[b] = ids[b], ids[a]  # two tokens trade ids
    (renamed / "tokenizer.json").write_text(json.dumps(vocab))
    with pytest.raises(UserError, match="vocabulary of .* differs from the base's"):
        adopt(str(renamed), run, "sft", "sft.from_model")
    assert not run.model("policy").exists() and not run.model("dpo").exists() and not run.model("sft").exists()
    adopt(str(tuned), run, "policy", "policy.from_model")
    assert (run.policy / "config.json").exists() and (run.policy / "tokenizer.json").exists()


def test_compare_config_and_its_errors(tmp_path, pair):
    _, base, tuned = pair
    cfg, left_out = compare_config(str(base), str(tuned), reward="python:tests.reward_functions:likes_great",
                                   layers=(1,), settings=("dictionaries.widths=[1.0]", "policy.seed=3"))
    assert left_out == LEXICON and not set(LEXICON) & set(cfg.stages)
    assert cfg.divergence.layers == (1,) and cfg.dictionaries.widths == (1.0,) and cfg.policy.seed == 3
    assert cfg.name == "compare-tuned" and cfg.corpus.source == "organism"
    with pytest.raises(UserError, match="--policy .*no such model directory"):
        compare_config(str(base), str(tmp_path / "absent"))
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        compare_config(str(base), str(tuned), settings=("dictionaries.widths",))
    with pytest.raises(UserError, match="unknown config key 'width' in \\[dictionaries\\]"):
        compare_config(str(base), str(tuned), settings=("dictionaries.width=2",))
    assert main(["compare", "--base", str(base), "--policy", str(tuned), "--runs-dir", str(tmp_path),
                 "--until", "digits"]) == 2


def test_dpo_and_sft_models_trained_elsewhere_are_adopted(tiny_run, tmp_path):
    cfg, run_dir, _ = tiny_run
    copy = RunDir(tmp_path / "tiny")
    shutil.copytree(run_dir.root, copy.root)
    for name in ("dpo", "sft"):
        shutil.rmtree(copy.model(name))
    trained = DPOResult.load(run_dir)
    d = train_dpo(replace(cfg.dpo, from_model=str(run_dir.model("dpo"))), copy)
    # The same model on the same held-out pairs: the same implicit-reward accuracy, without training.
    assert d.steps == 0 and d.implicit_reward_accuracy == pytest.approx(trained.implicit_reward_accuracy)
    s = sft_stage(replace(cfg.sft, from_model=str(run_dir.model("sft"))), copy)
    assert s.rows == 0 and s.reward_threshold is None and s.sft.mean_kl_per_token > 0
    assert (copy.model("sft") / "tokenizer.json").exists()
    page = build_report(copy).read_text()
    assert f"adopted from {run_dir.model('dpo')}" in page and f"Adopted from {run_dir.model('sft')}" in page

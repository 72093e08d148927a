"""Command-line behaviour: help, and one-line errors with a non-zero exit for bad input."""

import os
import subprocess
import sys

import pytest
import torch
from transformers import BioGptConfig, BioGptForCausalLM

from rlhf.tokenizer import TokenizerConfig, build_tokenizer
from tests.conftest import ROOT


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "study", *args], cwd=ROOT, env=env, text=True, capture_output=True, timeout=300)


def assert_user_error(result: subprocess.CompletedProcess, text: str) -> None:
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and text in lines[0], result.stderr


def test_help_lists_every_command_and_option():
    out = run("--help").stdout
    for word in ("run", "compare", "report", "status", "convert"):
        assert word in out
    out = run("run", "--help").stdout
    for option in ("--config", "--runs-dir", "--force", "--until"):
        assert option in out
    out = run("compare", "--help").stdout
    for option in ("--base", "--policy", "--corpus", "--text-column", "--layers", "--reward", "--set"):
        assert option in out


def console(*args: str) -> subprocess.CompletedProcess:
    """The installed ``rlhf-interp`` console script (pyproject's [project.scripts])."""
    script = os.path.join(os.path.dirname(sys.executable), "rlhf-interp")
    assert os.path.exists(script), "rlhf-interp is not installed: run bash scripts/setup.sh (pip install -e .)"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([script, *args], cwd=ROOT, env=env, text=True, capture_output=True, timeout=300)


def test_console_script_runs_the_study_commands_and_the_probe(tmp_path):
    out = console("--help").stdout
    assert out.startswith("usage: rlhf-interp")
    for word in ("run", "compare", "report", "status", "convert", "probe"):
        assert word in out
    probe = console("probe", "--help")
    assert probe.returncode == 0 and probe.stdout.startswith("usage: rlhf-interp probe")
    for option in ("--run-dir", "--model", "--features", "--target", "--alpha"):
        assert option in probe.stdout
    assert_user_error(console("status", "--run-dir", str(tmp_path / "absent")), "does not exist")
    assert_user_error(console("probe", "--run-dir", str(tmp_path / "absent")), "absent")


def test_unknown_config_key(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('name = "x"\n[pretrain]\nlayers = 3\n')
    assert_user_error(run("run", "--config", str(cfg), "--runs-dir", str(tmp_path)), "unknown config key 'layers' in [pretrain]")


def test_unknown_stage(tmp_path):
    assert_user_error(run("run", "--config", str(ROOT / "configs/tiny.toml"), "--runs-dir", str(tmp_path), "--until", "nope"),
                      "unknown stage 'nope'")


@pytest.mark.parametrize("command", ["report", "status"])
def test_missing_run_dir(command, tmp_path):
    assert_user_error(run(command, "--run-dir", str(tmp_path / "absent")), "does not exist")


@pytest.mark.parametrize("command", ["report", "status"])
def test_empty_run_dir(command, tmp_path):
    assert_user_error(run(command, "--run-dir", str(tmp_path)), "is not a study's run directory")


def test_unsupported_architecture(tmp_path):
    BioGptForCausalLM(BioGptConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=64, max_position_embeddings=16)).save_pretrained(tmp_path)
    build_tokenizer(["the plot was superb ."], TokenizerConfig(), tmp_path)
    assert_user_error(run("convert", "--model", str(tmp_path)), "no adapter for the architecture BioGptForCausalLM")


def test_tokenizer_model_vocab_mismatch(tmp_path, tiny_run):
    _, run_dir, _ = tiny_run
    build_tokenizer([" ".join(f"w{i}" for i in range(1000))], TokenizerConfig(), tmp_path / "tok")
    assert_user_error(run("convert", "--model", str(run_dir.base), "--tokenizer", str(tmp_path / "tok")),
                      "tokenizer has 1004 tokens but the model's vocabulary has")


def test_convert_prints_the_hooks(tiny_run):
    _, run_dir, _ = tiny_run
    result = run("convert", "--model", str(run_dir.base))
    assert result.returncode == 0, result.stderr
    assert "blocks.0.hook_mlp_out" in result.stdout and "GPTNeoXForCausalLM" in result.stdout
    assert torch.__version__.startswith("2.13")


@pytest.mark.parametrize("atol", ["-1", "nan", "0", "inf", "abc"])
def test_convert_refuses_an_atol_that_is_not_a_positive_number(atol):
    result = run("convert", "--model", "unused", "--atol", atol)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "argument --atol:" in result.stderr


def test_a_sequence_classifier_is_refused_not_converted(tmp_path):
    from transformers import GPTNeoXConfig, GPTNeoXForSequenceClassification

    config = GPTNeoXConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                           max_position_embeddings=16, num_labels=2)
    GPTNeoXForSequenceClassification(config).save_pretrained(tmp_path)
    assert_user_error(run("convert", "--model", str(tmp_path)),
                      "is a GPTNeoXForSequenceClassification checkpoint, not a causal language model")

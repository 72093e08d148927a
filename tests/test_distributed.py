"""The study under a two-process ``accelerate launch`` on this CPU machine (gloo backend).

``accelerate launch --cpu`` starts a single process unless MPI is set up; ``--multi_gpu``
launches through torchrun, which on a machine without a GPU starts CPU processes that
accelerate joins with gloo. Each test works on a copy of the tiny study, so the shared
one stays as it was.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlhf.rundir import RunDir, read_json
from tests.conftest import TINY

ACCELERATE = Path(sys.executable).with_name("accelerate")


def launch(runs_dir: Path, *args: str, config: Path = TINY) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MASTER_PORT": "29517"}
    return subprocess.run(
        [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "study", "run", "--config", str(config),
         "--runs-dir", str(runs_dir), *args],
        capture_output=True, text=True, env=env, timeout=600,
    )


@pytest.fixture(scope="module")
def copied(tiny_run, tmp_path_factory):
    runs = tmp_path_factory.mktemp("launched")
    shutil.copytree(tiny_run[1].root, runs / tiny_run[1].root.name)
    return tiny_run[1].root, runs


def test_two_process_cache_equals_the_single_process_cache(copied):
    original, runs = copied
    run = launch(runs, "--force", "activations", "--until", "activations")
    assert run.returncode == 0, run.stderr[-3000:]
    one_run, two_run = RunDir(original), RunDir(runs / original.name)
    assert read_json(two_run.manifest("activations"))["processes"] == 2
    cached = one_run.activations_root
    shards = sorted(p.relative_to(cached) for p in cached.rglob("*.safetensors"))
    assert shards and shards == sorted(p.relative_to(two_run.activations_root) for p in two_run.activations_root.rglob("*.safetensors"))
    for rel in shards:
        one, two = load_file(str(cached / rel)), load_file(str(two_run.activations_root / rel))
        assert all(torch.equal(one[k], two[k]) for k in one), rel
    for index in cached.rglob("index.json"):
        assert read_json(index) == read_json(two_run.activations_root / index.relative_to(cached))


def test_two_process_policy_training_writes_the_run_directory_once(copied):
    original, runs = copied
    run = launch(runs, "--force", "policy", "--until", "policy")
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("[policy] running") == 1  # the other process logs nothing
    copy = RunDir(runs / original.name)
    assert read_json(copy.manifest("policy"))["processes"] == 2
    result = read_json(copy.training / "policy.json")
    assert result["steps"] == read_json(RunDir(original).training / "policy.json")["steps"]
    assert result["reward_gain"] > 0.3  # data-parallel GRPO still learns the reward
    assert (copy.policy / "config.json").exists()
    assert not copy.model_partial("policy").exists()


@pytest.fixture(scope="module")
def fewer_pairs(tmp_path_factory) -> Path:
    """The tiny config with one reward model on fewer pairs: a shorter launch of the same stage."""
    config = tmp_path_factory.mktemp("config") / "tiny.toml"
    text = TINY.read_text()
    assert "n_pairs = 3000\ncontexts_per_word = 4" in text
    config.write_text(text.replace("n_pairs = 3000\ncontexts_per_word = 4",
                                   'n_pairs = 1000\ncontexts_per_word = 2\nkinds = ["mean_variance"]'))
    return config


def test_two_process_reward_models(copied, fewer_pairs):
    original, runs = copied
    run = launch(runs, "--force", "hidden_context", "--until", "hidden_context", config=fewer_pairs)
    assert run.returncode == 0, run.stderr[-3000:]
    copy = RunDir(runs / original.name)
    assert read_json(copy.manifest("hidden_context"))["processes"] == 2
    result = read_json(copy.training / "hidden_context.json")
    assert set(result["models"]) == {"mean_variance"} and result["models"]["mean_variance"]["pairwise_accuracy"] > 0.6
    assert (copy.model("reward_mean_variance") / "config.json").exists()


def test_two_process_sft_and_a_one_process_stage_refused(copied):
    original, runs = copied
    run = launch(runs, "--force", "sft", "--until", "sft")
    assert run.returncode == 0, run.stderr[-3000:]
    copy = RunDir(runs / original.name)
    assert read_json(copy.manifest("sft"))["processes"] == 2
    assert (copy.model("sft") / "config.json").exists() and read_json(copy.training / "sft.json")["reward_gain"] > 0
    # Only the digits stage chosen: the stages an earlier test left stale (everything after the activations it
    # re-cached) are not re-run on the way there.
    only_digits = runs / "only_digits.toml"
    only_digits.write_text('stages = ["digits"]\n' + TINY.read_text())
    run = launch(runs, "--force", "digits", "--until", "digits", config=only_digits)
    assert run.returncode != 0
    assert "trains in a single process" in run.stderr and "--until circuits" in run.stderr

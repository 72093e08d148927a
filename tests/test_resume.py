"""SIGKILL the main job during pretraining; the re-run finishes from the last checkpoint."""

import os
import signal
import subprocess
import sys
import time

from rlhf.rundir import RunDir, read_json
from tests.conftest import ROOT, TINY


def study(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "study", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, **kw)


def test_killed_pretraining_resumes(tmp_path):
    config = tmp_path / "resume.toml"
    config.write_text(TINY.read_text().replace('name = "tiny"', 'name = "resume"').replace("eval_every = 100", "eval_every = 50"))
    run_dir = RunDir(tmp_path / "runs" / "resume")
    checkpoints = run_dir.model_partial("base") / "checkpoints"
    proc = study("run", "--config", str(config), "--runs-dir", str(tmp_path / "runs"))
    deadline = time.time() + 300
    while not list(checkpoints.glob("checkpoint-*/trainer_state.json")):
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "pretraining wrote no checkpoint in time"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not run_dir.manifest("pretrain").exists()
    assert not run_dir.base.exists()
    before = {s: read_json(run_dir.manifest(s))["finished"] for s in ("corpus", "tokenizer")}

    # Up to pretraining only: what follows is the tiny study the session fixture already runs whole.
    rerun = study("run", "--config", str(config), "--runs-dir", str(tmp_path / "runs"), "--until", "pretrain")
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    assert "[corpus] done already, skipped" in out and "[tokenizer] done already, skipped" in out
    assert "resuming from the last checkpoint" in out
    after = {s: read_json(run_dir.manifest(s))["finished"] for s in ("corpus", "tokenizer")}
    assert after == before
    p = read_json(run_dir.training / "pretrain.json")
    assert p["resumed"] is True
    assert p["test_loss"] < 1.10 * p["entropy_floor"]
    steps = [s for s, _ in p["train_curve"]]
    assert steps == sorted(steps) and steps[0] < 50, "the curve keeps the steps from before the kill"
    assert run_dir.manifest("pretrain").exists() and not checkpoints.parent.exists()

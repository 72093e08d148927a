"""Automated interpretability against a real HTTP server on 127.0.0.1, through the real openai client."""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from analysis.autointerp import AutointerpConfig, autointerp_stage, chosen_features, explanation_utility
from analysis.results import AutointerpResult
from rlhf.errors import UserError
from rlhf.rundir import RunDir, read_json
from study.report import build_report
from tests.conftest import ROOT
from tests.openai_server import FakeOpenAI

KEY = "sk-test-SECRET-0123456789"


@pytest.fixture
def study(tiny_run, tmp_path, monkeypatch):
    """A copy of the tiny study, so each test starts without autointerp results."""
    _, run_dir, _ = tiny_run
    copy = tmp_path / "tiny"
    shutil.copytree(run_dir.root, copy, ignore=shutil.ignore_patterns("autointerp"))
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    return RunDir(copy)


def config(server: FakeOpenAI, **kw) -> AutointerpConfig:
    return replace(AutointerpConfig(base_url=server.url, model="test-model", top_k=2, backoff_seconds=0.01,
                                    prices={"test-model": [1.0, 2.0]}), **kw)


def test_all_features_explained_and_scored_and_the_second_run_sends_nothing(study):
    with FakeOpenAI() as server:
        r = autointerp_stage(config(server), study)
        first = len(server.log)
        assert r == AutointerpResult.load(study)  # the stage saves what it returns
        assert r.failed_features == 0 and len(r.features) == len(chosen_features(study, config(server)))
        assert {f.model for f in r.features} == {"base", "policy"}
        for f in r.features:
            assert f.explanation.startswith("Positive sentiment")
            assert -1 <= f.simulation_score <= 1 and 0 <= f.detection_score <= 1
            assert f.related_to_objective is True and f.explanation_utility > 0
        # explain, simulate, detect and classify for each feature; identical prompts are asked once
        assert len(r.features) < first == r.requests_sent_this_run <= 4 * len(r.features)
        assert len({e["hash"] for e in server.log}) == len(list(AutointerpResult.cache_dir(study).glob("*.json")))
        assert r.usage.prompt_tokens > 0 and r.cost_usd == pytest.approx(
            (r.usage.prompt_tokens * 1.0 + r.usage.completion_tokens * 2.0) / 1e6)
        assert r.comparison["policy"].share_related_to_objective == 1.0

        again = autointerp_stage(config(server), study)
        assert len(server.log) == first and again.requests_sent_this_run == 0
        assert [f.explanation for f in again.features] == [f.explanation for f in r.features]
        # Even with every per-feature result gone, the request cache answers everything.
        shutil.rmtree(AutointerpResult.feature_path(study, "policy", "x", 0).parents[2])
        autointerp_stage(config(server), study)
        assert len(server.log) == first
    page = build_report(study).read_text()
    assert "Automated interpretability" in page and "Positive sentiment words" in page
    assert "estimated cost" in page and f"${r.cost_usd:.4f}" in page
    assert "<b>Explanation</b> (autointerp: simulation" in (study.report / "feature_diff.html").read_text()
    assert read_json(study.report / "summary.json")["autointerp_tokens"] > 0


def test_rate_limits_server_errors_and_malformed_answers_are_retried(study):
    plan = {"explain": [429, 500, 503], "simulate": ["garbage", "malformed"], "detect": ["malformed"], "classify": [429]}
    with FakeOpenAI(plan=plan) as server:
        r = autointerp_stage(config(server), study)
    assert r.failed_features == 0
    faults = [e["fault"] for e in server.log if e["fault"] is not None]
    assert sorted(map(str, faults)) == sorted(map(str, [429, 500, 503, "garbage", "malformed", "malformed", 429]))


def test_a_feature_that_keeps_failing_is_recorded_and_the_batch_goes_on(study):
    cfg_kw = {"max_retries": 2, "max_concurrency": 1}
    with FakeOpenAI(plan={"simulate": ["garbage"] * 3}) as server:
        r = autointerp_stage(config(server, **cfg_kw), study)
    failed = [f for f in r.features if f.failures]
    assert len(failed) == 1 and failed[0].failures[0].step == "simulate"
    assert "not JSON" in failed[0].failures[0].error and failed[0].simulation_score is None
    assert failed[0].explanation and failed[0].detection_score is not None  # the other steps still ran
    assert all(f.simulation_score is not None for f in r.features if not f.failures)
    # A re-run retries only the failed step; everything answered comes from the cache.
    with FakeOpenAI() as server:
        r = autointerp_stage(config(server, **cfg_kw), study)
    assert r.failed_features == 0 and [e["kind"] for e in server.log] == ["simulate"]


def test_a_killed_run_resends_no_answered_request(study):
    with FakeOpenAI(delay=0.15) as server:
        code = ("import sys; from dataclasses import replace; from analysis.autointerp import AutointerpConfig, autointerp_stage;"
                "from rlhf.rundir import RunDir;"
                f"autointerp_stage(AutointerpConfig(base_url={server.url!r}, model='test-model', top_k=2, max_concurrency=2),"
                f" RunDir({str(study.root)!r}))")
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
        errors = (study.root.parent / "killed_run.stderr").open("w")
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=errors)
        # Start-up (imports, SAEs, examples) can take minutes on a loaded two-core machine: wait for the answers,
        # not for a fixed time.
        deadline = time.time() + 900
        while len(server.answered()) < 10 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        errors.close()
        assert proc.poll() is None, "the run ended before it could be killed midway: " + (
            study.root.parent / "killed_run.stderr").read_text()[-2000:]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert len(server.answered()) >= 10
        recorded = {read_json(p)["messages"][0]["content"] for p in AutointerpResult.cache_dir(study).glob("*.json")}
        assert recorded
        recorded_hashes = {hashlib.sha256(m.encode()).hexdigest() for m in recorded}
        before = len(server.log)
        r = autointerp_stage(config(server), study)
        resent = [e for e in server.log[before:] if e["hash"] in recorded_hashes]
        assert resent == [] and r.failed_features == 0


def test_the_api_key_is_used_but_never_written(study):
    with FakeOpenAI(plan={"explain": [500]}) as server:
        autointerp_stage(config(server), study)
    assert all(e["authorization"] == f"Bearer {KEY}" for e in server.log)
    for path in study.root.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), f"the API key leaked into {path}"


def test_refused_credentials_stop_with_a_clear_error(study):
    with FakeOpenAI(plan={"explain": [401] * 50}) as server:
        with pytest.raises(UserError, match="OPENAI_API_KEY"):
            autointerp_stage(config(server, max_concurrency=1), study)


def test_without_an_endpoint_the_stage_is_skipped(tiny_run, capsys):
    _, run_dir, lines = tiny_run
    assert "[autointerp] finished" in " ".join(lines)  # the study went on
    assert not run_dir.stage_dir("autointerp").exists()
    assert autointerp_stage(AutointerpConfig(), run_dir) is None
    assert "no endpoint configured" in capsys.readouterr().out


def test_explanation_utility_is_the_summed_absolute_valence():
    assert explanation_utility("good and bad things") == pytest.approx(1.9 + 2.5)
    assert explanation_utility("a comma after a determiner") == 0.0

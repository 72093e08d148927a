"""The zoo (``python -m study zoo``): organisms on one shared base, each a run directory of its own, and the
zoo's page. The tiny study's run stands in for the trained base."""

import shutil
from dataclasses import replace

import pytest

from analysis.results import RewardAttributionResult
from rlhf.organisms.edit import PlantedEdit
from rlhf.results import PolicyResult
from rlhf.rundir import RunDir
from study.__main__ import main
from study.zoo import run_zoo


def test_the_zoo_runs_an_organism_on_the_shared_base_and_writes_its_page(tiny_run, tmp_path):
    cfg, tiny, _ = tiny_run
    zoo = replace(cfg, name="zoo", runs_dir=str(tmp_path))
    shutil.copytree(tiny.root, tmp_path / "zoo" / "base", ignore=shutil.ignore_patterns("activations", "saes", "report"))
    lines: list[str] = []
    page = run_zoo(zoo, ("edit",), log=lines.append)
    assert "[pretrain] done already, skipped" in lines, "the base is trained once: the zoo's base run finds it finished"
    run = RunDir(tmp_path / "zoo" / "edit")
    policy = PolicyResult.load(run)
    assert policy.kept_reason == "planted" and policy.reward == "organism:edit"
    assert PlantedEdit.load(run.policy).hook.startswith("blocks.")
    attribution = RewardAttributionResult.load(run)
    assert attribution.organism == "edit" and all(g.gain > 0 for g in attribution.gain)
    edited = next(s for s in attribution.patching if s.site == PlantedEdit.load(run.policy).hook)
    assert all(r == pytest.approx(1.0, abs=1e-5) for r in edited.recovered)
    text = page.read_text()
    assert page == tmp_path / "zoo" / "report" / "index.html"
    assert "rank-one edit" in text and "../edit/report/index.html" in text and "Flagged" not in text
    assert (run.report / "index.html").exists()


def test_an_unknown_organism_is_one_line_before_anything_runs(tmp_path, capsys):
    assert main(["zoo", "--organisms", "edit", "nope", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown organism 'nope'; registered: sentiment, topic, trigger, length, edit" in err
    assert not (tmp_path / "zoo").exists()

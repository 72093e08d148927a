"""The documentation: the MkDocs site builds with --strict (a broken link fails), its generated pages
say what the code and bench/results/ say, and the README stays a front page."""

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def test_the_docs_build_strict_with_the_generated_pages(tmp_path):
    mkdocs = Path(sys.executable).with_name("mkdocs")
    done = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = (tmp_path / "site" / "results" / "index.html").read_text()
    # Every benchmark result is on the page, each run of the policy trainings a row of its table.
    for path in (ROOT / "bench" / "results").glob("*.json"):
        if not path.name.startswith("demo-summary-"):
            assert f"bench/results/{path.name}" in results
    seeds = json.loads((ROOT / "bench" / "results" / "policy_seeds.json").read_text())
    for run in seeds["runs"]:  # each training's gain and KL, as the page rounds them
        assert f"{run['gain']:.4g}" in results and f"{run['kl']:.4g}" in results
    from analysis.diffing import METHODS

    overview = (tmp_path / "site" / "methods" / "model-diffing" / "index.html").read_text()
    for name in METHODS:
        page = tmp_path / "site" / "methods" / "diffing" / name / "index.html"
        assert page.exists() and "Known-answer tests" in page.read_text()
        assert f"diffing/{name}/" in overview


def test_the_readme_is_a_front_page():
    readme = (ROOT / "README.md").read_text()
    assert readme.count("\n") < 200
    assert "bash scripts/study.sh" in readme and "bash scripts/test.sh" in readme
    assert "python -m probes.fit_linear_reward" in readme
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("bash scripts/test.sh")

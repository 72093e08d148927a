"""The shape of the code: RunDir alone knows the run directory's layout, and the report
package reads results, never stage code."""

import ast
import re
import subprocess
import sys

from tests.conftest import ROOT

PACKAGES = ("rlhf", "analysis", "probes", "study", "bench", "tests")
# A directory of the run-directory layout spelled as a path part ("saes" / ..., / "models").
LAYOUT = re.compile(r"""(/\s*["'](saes|models|activations|autointerp|model_diffing|digits|manifests|corpus|training|"""
                    r"""analysis|probes|report)["'])|(["'](saes|models|activations|autointerp|model_diffing|manifests)["']\s*/)""")


def _sources(*packages: str):
    for package in packages:
        yield from sorted((ROOT / package).rglob("*.py"))


def test_no_module_but_rundir_spells_the_layout():
    offenders = []
    for path in _sources(*PACKAGES):
        if path == ROOT / "rlhf" / "rundir.py" or path == ROOT / "tests" / "test_layout.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if LAYOUT.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "paths under a run directory built outside RunDir:\n" + "\n".join(offenders)


ALLOWED_IN_REPORT = ("rlhf.results", "rlhf.plots", "analysis.results", "probes.results", "rlhf.rundir", "rlhf.artifact",
                     "rlhf.errors", "study.report", "study.manifest")


def test_the_report_imports_no_stage_module():
    suite = ("rlhf", "analysis", "probes", "study")
    offenders = []
    for path in _sources("study/report"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            for name in names:
                if name.split(".")[0] in suite and not name.startswith(ALLOWED_IN_REPORT):
                    offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_a_config_is_read_without_the_heavy_libraries():
    """The command line checks a config before it imports torch & co., so a mistake is reported at once."""
    code = ("import sys, study.config, study.report.section, rlhf.results, analysis.results, probes.results; "
            "heavy = sorted(m for m in ('torch', 'transformers', 'trl', 'sae_lens', 'transformer_lens') if m in sys.modules); "
            "print(heavy); sys.exit(1 if heavy else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_results_modules_stay_light():
    """Results are read by the report and the command lines: their modules import no torch at load."""
    for path in (ROOT / "rlhf" / "results.py", ROOT / "analysis" / "results.py", ROOT / "probes" / "results.py",
                 ROOT / "rlhf" / "artifact.py", ROOT / "rlhf" / "rundir.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        modules = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
        modules += [n.module for n in top if isinstance(n, ast.ImportFrom) and n.module]
        heavy = [m for m in modules if m.split(".")[0] in ("torch", "transformers", "trl", "sae_lens", "transformer_lens")]
        assert not heavy, f"{path.relative_to(ROOT)} imports {heavy} at module level"

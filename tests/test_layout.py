"""The shape of the code: RunDir alone knows the run directory's layout, and the report
package reads results, never stage code."""

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

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


ALLOWED_IN_REPORT = ("rlhf.results", "rlhf.plots", "analysis.results", "analysis.diffing.registry", "analysis.dictionary_kinds", "rlhf.zoo", "study.stages", "rlhf.registry", "probes.results", "rlhf.rundir", "rlhf.artifact",
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


def _lint_imports(root) -> subprocess.CompletedProcess:
    """import-linter's contracts (pyproject.toml) on the packages under ``root``."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    lint = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(lint), "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_the_import_contracts_hold():
    """The layers (study -> probes -> analysis -> rlhf), the light modules and no cycles."""
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert "3 kept, 0 broken" in done.stdout


def test_an_upward_import_breaks_the_contracts(tmp_path):
    """The same check on a copy of the code with one import planted against the layering: analysis
    reading probes (the arrow reward attribution once had) and torch in a results module."""
    for package in ("study", "probes", "analysis", "rlhf"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    metrics = tmp_path / "analysis" / "metrics.py"
    metrics.write_text(metrics.read_text(encoding="utf-8") + "\nimport probes.results  # noqa\n")
    results = tmp_path / "rlhf" / "results" / "policy.py"
    results.write_text(results.read_text(encoding="utf-8") + "\nimport torch  # noqa\n")
    done = _lint_imports(tmp_path)
    assert done.returncode != 0
    assert "analysis is not allowed to import probes" in done.stdout and "analysis.metrics -> probes.results" in done.stdout
    assert "rlhf.results is not allowed to import torch" in done.stdout


# A file name in a run directory (a literal, or an f-string's text with its fields as {}).
FILE_NAME = re.compile(r"[\w{}\-]*[A-Za-z_][\w{}\-]*\.(json|png|safetensors|txt|log)")
# Names that other libraries' formats fix (Hugging Face, SAE-Lens, TRL, vaderSentiment).
THIRD_PARTY = {"config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json", "cfg.json", "sae_weights.safetensors",
               "trainer_state.json", "model.safetensors", "vader_lexicon.txt"}
ARTIFACTS = ("rlhf/results/", "analysis/results/", "probes/results/", "rlhf/rundir.py", "rlhf/artifact.py")
# Files that are no Artifact, each spelled by the one module that writes and reads it.
OWNED = {"check.json": "rlhf/policy/kl_control.py", "organism.json": "rlhf/organisms/sentiment.py",
         "words.json": "rlhf/organisms/sentiment.py", "shard_{}.safetensors": "analysis/activations.py",
         "crosscoder_seed{}.safetensors": "analysis/diffing/crosscoder.py", "training.json": "analysis/dictionaries.py",
         "difference_dictionary_seed{}.safetensors": "analysis/diffing/difference_dictionary.py",
         "planted_edit.json": "rlhf/organisms/edit.py"}


def _file_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)
        elif isinstance(node, ast.JoinedStr):
            names.add("".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values))
    return {n for n in names if FILE_NAME.fullmatch(n) and n not in THIRD_PARTY}


def test_every_run_directory_file_is_named_by_its_owner_alone():
    """Producers, the report and the pipeline name a stage's files only through its Artifact
    (``path``, ``figure``); the few files that are no Artifact are spelled by the one module that owns them."""
    where: dict[str, list[str]] = {}
    for path in _sources("rlhf", "analysis", "probes", "study"):
        for name in _file_names(path):
            where.setdefault(name, []).append(str(path.relative_to(ROOT)))
    offenders = [f"{name}: {', '.join(files)}" for name, files in sorted(where.items())
                 if len(files) > 1 or not (files[0].startswith(ARTIFACTS) or OWNED.get(name) == files[0])]
    assert not offenders, "run-directory file names spelled outside their owner:\n" + "\n".join(offenders)

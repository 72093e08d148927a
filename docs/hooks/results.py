"""MkDocs hook: the pages generated at build time. The Results page from ``bench/results/*.json``,
so that no measured figure in the docs is typed by hand (each benchmark's JSON rendered by the
shape it has, its PNG copied beside it); and one page per registered diffing method from the
registry and the method's own docstrings, so the docs list exactly the methods the stage runs."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
DIFFING = ROOT / "analysis" / "diffing"
# The tests that check each method against a planted answer (tests/<file>::<function>); the build
# fails if one is missing. The stage's own tests (every method scored at every layer, splicing a
# full basis is patching the hook) cover every method and are named on the overview page.
KNOWN_ANSWERS = {
    "mmcs_diff": ["test_model_diffing.py::test_a_latent_that_never_fires_is_neither_ranked_nor_carded"],
    "crosscoder_scaling": ["test_crosscoder.py::test_finds_the_planted_policy_only_direction_with_few_dead_latents",
                           "test_crosscoder.py::test_latent_scaling_separates_them"],
    "crosscoder_norm": ["test_crosscoder.py::test_recovers_a_shared_and_a_policy_only_direction"],
    "difference_dictionary": ["test_crosscoder.py::test_difference_dictionary_reads_base_and_writes_policy"],
    "difference_sae": ["test_model_diffing.py::test_a_rerun_reuses_the_saved_dictionaries_and_finds_the_same_latents"],
    "activation_difference_lens": ["test_diffing_methods.py::test_the_lens_recovers_the_planted_direction_and_the_tokens_it_promotes"],
    "stagewise_sae": ["test_diffing_methods.py::test_stagewise_fine_tuning_ranks_the_latents_that_moved_to_the_planted_direction_first"],
    "kl": ["test_model_diffing.py::test_every_method_is_scored_on_every_layer"],
    "logit_amplification": ["test_diffing_methods.py::"
                            "test_amplification_at_one_is_the_policy_and_beyond_one_exaggerates_the_planted_preference"],
}
INTRO = """# Results

Generated from `bench/results/*.json` when the docs are built (`docs/hooks/results.py`): each
benchmark writes its JSON there, and this page shows it as it is. `bench/README.md` says what
each script compares and how to run it. A figure that rests on one run is marked as such; a
verdict is kept only where it holds on every run measured.
"""


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value) if len(value) <= 6 else f"({len(value)} values)"
    return str(value).replace("|", "\\|")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _runs(data: dict[str, Any]) -> str:
    """A benchmark of several runs (``{"runs": [{...}, ...]}``): one row each, its scalar columns."""
    runs = data["runs"]
    keys = [k for k in runs[0] if not isinstance(runs[0][k], list | dict)]
    settings = f"Settings changed from the config: `{', '.join(data['settings'])}`.\n\n" if data.get("settings") else ""
    passed = sum(bool(r.get("passes")) for r in runs)
    verdict = f"{passed} of {len(runs)} pass.\n\n" if "passes" in keys else ""
    note = f"{data['note']}\n\n" if data.get("note") else ""
    return settings + verdict + note + _table(keys, [[r[k] for k in keys] for r in runs])


def _verdicts(data: dict[str, Any]) -> str:
    """Verdicts over several studies (``{"runs": [names], "rows": [{key, values, verdict}]}``)."""
    return _table(["measure", *data["runs"], "over the runs"],
                  [[r["key"], *r["values"], r["verdict"]] for r in data["rows"]])


def _summaries(paths: list[Path]) -> str:
    """Demo summaries (``report/summary.json`` of whole studies): one column per run."""
    data = {p.stem.removeprefix("demo-summary-"): json.loads(p.read_text()) for p in paths}
    keys = sorted({k for d in data.values() for k, v in d.items() if not isinstance(v, list | dict)})
    return _table(["measure", *data], [[k, *(d.get(k, "") for d in data.values())] for k in keys])


def results_page() -> tuple[str, list[Path]]:
    """The page's markdown and the figures it shows."""
    parts, figures = [INTRO], []
    summaries = sorted(RESULTS.glob("demo-summary-*.json"))
    for path in sorted(set(RESULTS.glob("*.json")) - set(summaries)):
        data = json.loads(path.read_text())
        parts.append(f"## {path.stem}\n\nFrom `bench/results/{path.name}`.\n")
        parts.append(_verdicts(data) if "rows" in data else _runs(data))
        figure = path.with_suffix(".png")
        if figure.exists():
            parts.append(f"\n![{path.stem}](results/{figure.name})\n")
            figures.append(figure)
    if summaries:
        parts.append("## Demo summaries\n\nThe `report/summary.json` of whole demo runs kept in `bench/results/` "
                     "(one column per run, named by commit).\n")
        parts.append(_summaries(summaries))
    return "\n".join(parts), figures


def registry() -> dict[str, tuple[str, str]]:
    """The diffing registry (light: it imports no method): method name -> (module, function)."""
    from analysis.diffing.registry import METHODS

    return {name: tuple(spec.find.removeprefix("analysis.diffing.").split(":")) for name, spec in METHODS.items()}


def _test_exists(ref: str) -> bool:
    file, _, name = ref.partition("::")
    return f"def {name}(" in (ROOT / "tests" / file).read_text()


def method_page(name: str, module: str, function: str) -> str:
    tree = ast.parse((DIFFING / f"{module}.py").read_text())
    found = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == function), None)
    tests = KNOWN_ANSWERS.get(name, [])
    missing = [t for t in tests if not _test_exists(t)]
    if not tests or missing:
        raise ValueError(f"docs/hooks/results.py: diffing method {name!r} needs its known-answer tests in KNOWN_ANSWERS "
                         f"(missing: {missing or 'none listed'})")
    return "\n".join([
        f"# `{name}`\n",
        f"`analysis/diffing/{module}.py`, `{function}` (registered in `analysis/diffing/registry.py`).\n",
        ast.get_docstring(tree) or "", "",
        *([ast.get_docstring(found) or "", ""] if found else []),
        "**Scored by** the model-diffing stage's shared scores ([Model diffing](../model-diffing.md)): valence "
        "correlation of its top latents, high-utility precision and recall of the tokens they write (or name), "
        "the share of the exact reward gain G its top 10 and 30 directions carry, and directional ablation.\n",
        "**Known-answer tests:** " + ", ".join(f"`tests/{t}`" for t in tests) + ".\n",
    ])


def on_files(files: Files, config: Any) -> Files:
    text, figures = results_page()
    files.append(File.generated(config, "results.md", content=text))
    for name, (module, function) in registry().items():
        files.append(File.generated(config, f"methods/diffing/{name}.md", content=method_page(name, module, function)))
    for figure in figures:
        files.append(File.generated(config, f"results/{figure.name}", abs_src_path=str(figure)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """The model-diffing overview lists the registered methods where it says ``<!-- methods -->``."""
    if page.file.src_uri != "methods/model-diffing.md":
        return markdown
    links = "\n".join(f"- [`{name}`](diffing/{name}.md)" for name in registry())
    return markdown.replace("<!-- methods -->", links)

"""Which layers moved: parameter divergence between base and the fine-tuned model, by layer and component."""

from __future__ import annotations

from typing import Any

from analysis.results import DivergenceResult
from rlhf.rundir import RunDir
from study.report.section import Section


def context(run: RunDir, d: DivergenceResult) -> dict[str, Any]:
    components = d.components
    rows = [(f"layer {layer}", d.total[layer], d.normalised[layer],
             *[d.layers[layer][c].divergence if c in d.layers[layer] else 0.0 for c in components],
             "chosen" if layer in d.chosen_layers else "") for layer in sorted(d.layers)]
    outside = [(name, row.divergence, row.normalised) for name, row in d.outside.items()]
    return {"d": d, "rows": rows, "header": ("layer", "divergence", "normalised", *components, ""), "outside": outside,
            "figure": DivergenceResult.figure(run, "bars"),
            "by_rank": d.chosen_layers == tuple(sorted(d.ranking[: d.top_n])),
            "chosen": ", ".join(str(x) for x in d.chosen_layers),
            "summary": {"divergent_layers_ranked": ", ".join(str(x) for x in d.ranking),
                        "chosen_layers": ", ".join(str(x) for x in d.chosen_layers)}}


SECTION = Section(
    "divergence", "Which layers moved: parameter divergence", "divergence.html.j2", (DivergenceResult,), context,
    labels={"divergent_layers_ranked": "layers by parameter divergence", "chosen_layers": "layers analysed"},
)

"""Reward models with hidden context (DPL): learned spreads against the raters' disagreement."""

from __future__ import annotations

from typing import Any

from rlhf.results import HiddenContextResult
from rlhf.rundir import RunDir
from study.report.section import Section


def context(run: RunDir, h: HiddenContextResult) -> dict[str, Any]:
    rows = [(kind, m.pairwise_accuracy, m.agrees_with_lexicon_means, m.mean_vs_lexicon_mean_spearman,
             m.std_vs_lexicon_std_spearman if m.std_vs_lexicon_std_spearman is not None else "-", m.r_squared)
            for kind, m in h.models.items()]
    where = ("each alternative is the review up to its sentiment word, scored at the word's last token"
             if h.read_at == "last_token" else "each alternative is scored at an EOS appended to it")
    categorical = h.models.get("categorical")
    distributions = [(label, d.word, d.lexicon_mean, d.lexicon_std, " ".join(f"{p:.2f}" for p in d.probabilities))
                     for label, d in (categorical.distributions or {}).items()] if categorical else []
    mv = h.models.get("mean_variance")
    return {"h": h, "where": where, "rows": rows,
            "fit_std": f"{h.per_word_fit.std_vs_lexicon_std_spearman:.3f}",
            "fit_mean": f"{h.per_word_fit.mean_vs_lexicon_mean_spearman:.3f}",
            "figure": HiddenContextResult.figure(run, "fits"), "distributions": distributions,
            "summary": {"dpl_std_vs_raters_spearman": mv.std_vs_lexicon_std_spearman} if mv else {}}


SECTION = Section(
    "hidden_context", "Reward models with hidden context (DPL)", "hidden_context.html.j2", (HiddenContextResult,),
    context, labels={"dpl_std_vs_raters_spearman": "DPL: learned spread vs raters' std (Spearman)"},
)

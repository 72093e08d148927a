"""Feature cards: one HTML block per dictionary feature, with circuitsvis token views.

circuitsvis renders each view as a script that inlines its whole JavaScript bundle
(about 1.3 MB) or fetches it from a CDN, which leaves an offline page blank. A page
here inlines the bundle once (``bundle_script``) and each view keeps only its render
call (``view``), so a page with forty cards stays small and works with no network.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Sequence
from pathlib import Path

import circuitsvis
import torch
from circuitsvis.attention import attention_patterns
from circuitsvis.tokens import colored_tokens_multi
from circuitsvis.utils.render import RenderedHTML
from markupsafe import Markup

from analysis.results import CardExample, FeatureCard, FeatureInterpretation, LatentCard
from rlhf.plots import figure_png, plt
from study.report.page import render


@functools.cache
def _bundle_js() -> str:
    path = Path(circuitsvis.__file__).parent / "dist" / "cdn" / "iife.js"
    # circuitsvis strips closing script tags from the bundle before inlining it; so do we.
    return path.read_text(encoding="utf-8").replace("</script>", "")


def bundle_script() -> Markup:
    """The circuitsvis bundle as a classic script: it defines the global ``CircuitsVis`` that every view calls."""
    return Markup("<script>") + Markup(_bundle_js()) + Markup("</script>")


def view(rendered: RenderedHTML) -> Markup:
    """A circuitsvis view without its inlined bundle, for a page that has ``bundle_script`` once.

    Token strings travel as JSON inside the script, where ``</script>`` or ``<!--`` in a
    token would end or break it; every ``<`` in the render call is written as ``\\u003c``."""
    bundle = _bundle_js()
    if bundle not in rendered.local_src:
        raise RuntimeError(f"circuitsvis {circuitsvis.__version__} changed how it inlines its bundle; "
                           "study/report/cards.py must be updated")
    markup = rendered.local_src.replace(bundle, "")
    head, _, script = markup.partition("<script crossorigin type=\"module\">")
    body, _, tail = script.rpartition("</script>")
    body = body.replace("<", "\\u003c")
    # circuitsvis writes its mount point as ``<div .../>``, which HTML parses as an open div
    # swallowing the rest of the page: the first view would then replace every later one.
    if head.rstrip().endswith("/>"):
        head = head.rstrip()[:-2] + "></div>"
    return Markup(f"{head}<script crossorigin type=\"module\">{body}</script>{tail}")


def both_models_view(tokens: Sequence[str], policy: Sequence[float], base: Sequence[float], policy_label: str,
                     base_label: str) -> Markup:
    """Both models' activations on one text; the buttons switch the colouring between them."""
    values = torch.tensor([list(policy), list(base)]).T  # (tokens, 2): circuitsvis wants one column per value track
    return view(colored_tokens_multi(list(tokens), values, labels=[policy_label, base_label]))


def attention_view(tokens: Sequence[str], patterns: Sequence[Sequence[Sequence[float]]]) -> Markup:
    """One layer's attention patterns, [head][query][key], as a circuitsvis head selector."""
    return view(attention_patterns(tokens=list(tokens), attention=torch.tensor(patterns)))


def histogram_img(edges: Sequence[float], counts: dict[str, Sequence[int]], title: str) -> Markup:
    """A small bar chart of activation counts per bin, one bar series per model, as an inline PNG."""
    fig, ax = plt.subplots(figsize=(3.6, 2.0), dpi=90)
    width = (edges[1] - edges[0]) / (len(counts) + 1)
    for k, (label, c) in enumerate(counts.items()):
        ax.bar([e + k * width for e in edges[:-1]], c, width=width, align="edge", label=label)
    ax.set_yscale("symlog")
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    data = base64.b64encode(figure_png(fig)).decode()
    return Markup("<img class='hist' alt='{}' src='data:image/png;base64,{}'>").format(title, data)


def _examples(examples: Sequence[CardExample], policy_label: str, base_label: str) -> list[Markup]:
    return [both_models_view(e.tokens, e.policy, e.base, policy_label, base_label) for e in examples]


def feature_card(hook: str, card: FeatureCard, explanation: FeatureInterpretation | None = None) -> Markup:
    """One base-vs-policy diff feature: its numbers, activation histograms, logit tokens and top examples;
    with ``explanation`` (an autointerp result), the LLM's explanation and its scores."""
    i, j = card.feature, card.base_match
    scores = None
    if explanation is not None and explanation.explanation:
        scores = ", ".join(f"{name} {value:.2f}" for name, value in (("simulation", explanation.simulation_score),
                                                                     ("detection", explanation.detection_score))
                           if value is not None)
    facts = Markup("MCS to base feature {}: <b>{}</b> &middot; firing frequency {} (base match {}) &middot; correlation "
                   "with token valence <b>{}</b> (base match {}) &middot; logit alignment {}").format(
        j, f"{card.mcs:.3f}", f"{card.freq_policy:.3%}", f"{card.freq_base_match:.3%}", f"{card.utility_corr:+.3f}",
        f"{card.utility_corr_base_match:+.3f}", f"{card.logit_alignment:+.3f}")
    hist = card.histogram
    return render(
        "card.html.j2", anchor=f"{hook}-{i}", title=f"{hook} · policy feature {i}",
        histogram=histogram_img(hist.edges, {f"policy {i}": hist.policy, f"base {j}": hist.base_match},
                                "non-zero activations (held out)"),
        explanation=explanation.explanation if scores is not None else None, scores=scores, facts=facts,
        top=card.top_logit_tokens, bottom=card.bottom_logit_tokens,
        examples=_examples(card.examples, f"policy feature {i}", f"base feature {j}"))


def latent_card(hook: str, card: LatentCard) -> Markup:
    """One crosscoder latent: relative decoder norm, decoder cosine, latent scaling, and what it writes
    into each model (activation times that model's decoder norm) on its top held-out texts."""
    i = card.latent
    facts = Markup("relative decoder norm (policy) <b>{}</b> &middot; decoder cosine {} &middot; latent scaling nu "
                   "(error) <b>{}</b>, nu (reconstruction) {} &middot; firing frequency {}").format(
        f"{card.relative_norm:.3f}", f"{card.cosine:+.3f}", f"{card.nu_error:.3f}", f"{card.nu_recon:.3f}",
        f"{card.frequency:.3%}")
    return render(
        "card.html.j2", anchor=f"{hook}-crosscoder-{i}", title=f"{hook} · crosscoder latent {i}",
        histogram=histogram_img(card.histogram.edges, {f"latent {i}": card.histogram.counts},
                                "non-zero activations (held out)"),
        explanation=None, scores=None, facts=facts, top=card.top_logit_tokens, bottom=card.bottom_logit_tokens,
        examples=_examples(card.examples, "write into policy", "write into base"))

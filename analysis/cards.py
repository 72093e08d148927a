"""Feature cards: one HTML block per dictionary feature, with circuitsvis token views.

circuitsvis renders each view as a script that inlines its whole JavaScript bundle
(about 1.3 MB) or fetches it from a CDN, which leaves an offline page blank. A page
here inlines the bundle once (``bundle_script``) and each view keeps only its render
call (``view``), so a page with forty cards stays small and works with no network.
"""

from __future__ import annotations

import base64
import functools
import html
from pathlib import Path

import circuitsvis
import torch
from circuitsvis.attention import attention_patterns
from circuitsvis.tokens import colored_tokens_multi
from circuitsvis.utils.render import RenderedHTML

from rlhf.plots import figure_png, plt

CARD_CSS = """
.card{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;margin:1em 0}
.card h4{margin:.2em 0 .4em} .card .hist{width:320px;border:none;float:right;margin-left:1em}
.card .example{clear:none} .tokens{font-family:ui-monospace,monospace;font-size:.9em}
"""


@functools.cache
def _bundle_js() -> str:
    path = Path(circuitsvis.__file__).parent / "dist" / "cdn" / "iife.js"
    # circuitsvis strips closing script tags from the bundle before inlining it; so do we.
    return path.read_text(encoding="utf-8").replace("</script>", "")


def bundle_script() -> str:
    """The circuitsvis bundle as a classic script: it defines the global ``CircuitsVis`` that every view calls."""
    return f"<script>{_bundle_js()}</script>"


def view(rendered: RenderedHTML) -> str:
    """A circuitsvis view without its inlined bundle, for a page that has ``bundle_script`` once.

    Token strings travel as JSON inside the script, where ``</script>`` or ``<!--`` in a
    token would end or break it; every ``<`` in the render call is written as ``\\u003c``."""
    bundle = _bundle_js()
    if bundle not in rendered.local_src:
        raise RuntimeError(f"circuitsvis {circuitsvis.__version__} changed how it inlines its bundle; "
                           "analysis/cards.py must be updated")
    markup = rendered.local_src.replace(bundle, "")
    head, _, script = markup.partition("<script crossorigin type=\"module\">")
    body, _, tail = script.rpartition("</script>")
    body = body.replace("<", "\\u003c")
    # circuitsvis writes its mount point as ``<div .../>``, which HTML parses as an open div
    # swallowing the rest of the page: the first view would then replace every later one.
    if head.rstrip().endswith("/>"):
        head = head.rstrip()[:-2] + "></div>"
    return f"{head}<script crossorigin type=\"module\">{body}</script>{tail}"


def both_models_view(tokens: list[str], policy: list[float], base: list[float], policy_label: str,
                     base_label: str) -> str:
    """Both models' activations on one text; the buttons switch the colouring between them."""
    values = torch.tensor([policy, base]).T  # (tokens, 2): circuitsvis wants one column per value track
    return view(colored_tokens_multi(tokens, values, labels=[policy_label, base_label]))


def attention_view(tokens: list[str], patterns: list[list[list[float]]]) -> str:
    """One layer's attention patterns, [head][query][key], as a circuitsvis head selector."""
    return view(attention_patterns(tokens=tokens, attention=torch.tensor(patterns)))


def histogram_img(edges: list[float], counts: dict[str, list[int]], title: str) -> str:
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
    return f"<img class='hist' alt='{html.escape(title)}' src='data:image/png;base64,{data}'>"


def _card(anchor: str, title: str, histogram: str, explained: str, facts: str, top: list[str], bottom: list[str],
          examples: str) -> str:
    esc = html.escape
    logits = (f"<p>Promotes: <span class='tokens'>{esc(' '.join(top))}</span><br>"
              f"Suppresses: <span class='tokens'>{esc(' '.join(bottom))}</span></p>")
    examples = examples or "<p class='muted'>It never fires on the held-out texts.</p>"
    return (f"<div class='card' id='{esc(anchor)}'><h4>{esc(title)}</h4>{histogram}{explained}<p>{facts}</p>{logits}"
            f"<p>Top activating held-out texts (both models, same text):</p>{examples}<div style='clear:both'></div></div>")


def feature_card(hook: str, card: dict, explanation: dict | None = None) -> str:
    """One base-vs-policy diff feature: its numbers, activation histograms, logit tokens and top examples;
    with ``explanation`` (an autointerp result), the LLM's explanation and its scores."""
    i, j = card["feature"], card["base_match"]
    explained = ""
    if explanation:
        scores = ", ".join(f"{name} {explanation[key]:.2f}" for name, key in (("simulation", "simulation_score"),
                                                                              ("detection", "detection_score"))
                           if explanation.get(key) is not None)
        explained = (f"<p><b>Explanation</b> (autointerp{': ' + scores if scores else ''}): "
                     f"{html.escape(explanation['explanation'])}</p>")
    facts = (f"MCS to base feature {j}: <b>{card['mcs']:.3f}</b> &middot; firing frequency {card['freq_policy']:.3%} "
             f"(base match {card['freq_base_match']:.3%}) &middot; correlation with token valence "
             f"<b>{card['utility_corr']:+.3f}</b> (base match {card['utility_corr_base_match']:+.3f}) &middot; "
             f"logit alignment {card['logit_alignment']:+.3f}")
    hist = card["histogram"]
    examples = "".join(both_models_view(e["tokens"], e["policy"], e["base"], f"policy feature {i}", f"base feature {j}")
                       for e in card["examples"])
    return _card(f"{hook}-{i}", f"{hook} · policy feature {i}",
                 histogram_img(hist["edges"], {f"policy {i}": hist["policy"], f"base {j}": hist["base_match"]},
                               "non-zero activations (held out)"),
                 explained, facts, card["top_logit_tokens"], card["bottom_logit_tokens"], examples)


def latent_card(hook: str, card: dict) -> str:
    """One crosscoder latent: relative decoder norm, decoder cosine, latent scaling, and what it writes
    into each model (activation times that model's decoder norm) on its top held-out texts."""
    i = card["latent"]
    facts = (f"relative decoder norm (policy) <b>{card['relative_norm']:.3f}</b> &middot; decoder cosine "
             f"{card['cosine']:+.3f} &middot; latent scaling nu (error) <b>{card['nu_error']:.3f}</b>, nu "
             f"(reconstruction) {card['nu_recon']:.3f} &middot; firing frequency {card['frequency']:.3%}")
    hist = card["histogram"]
    examples = "".join(both_models_view(e["tokens"], e["policy"], e["base"], "write into policy", "write into base")
                       for e in card["examples"])
    return _card(f"{hook}-crosscoder-{i}", f"{hook} · crosscoder latent {i}",
                 histogram_img(hist["edges"], {f"latent {i}": hist["counts"]}, "non-zero activations (held out)"),
                 "", facts, card["top_logit_tokens"], card["bottom_logit_tokens"], examples)

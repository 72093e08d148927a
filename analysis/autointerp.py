"""Automated interpretability through any OpenAI-compatible endpoint: explain, simulate, score.

For each chosen feature (the MMCS-shared top-k of base and policy, and the policy's diff
features), the held-out texts it fires on most are shown to an LLM as token/activation
pairs normalised to 0-10 (OpenAI's neuron-explainer format), with a few random contexts,
and the LLM explains the feature in one sentence. From the explanation alone it then
simulates the activations on held-out examples (JSON numbers; current models offer no
completion logprobs, which the original scorer used), scored by Pearson correlation
with the true activations, and picks the activating texts out of a mix (detection,
balanced accuracy). Last, as in the paper, it says whether the explanation is about the
fine-tuning objective (sentiment), and each explanation's utility is the summed |VADER
valence| of its words.

Every request/response is cached on disk, keyed by a hash of (model, prompt): a re-run
sends no request already answered. Rate limits, server errors and timeouts are retried
with backoff; a malformed answer is retried, then recorded as that feature's failure.
The API key is read from the environment and never written anywhere.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import openai
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from analysis.activations import load_shards
from analysis.config import AutointerpConfig  # noqa: F401  (re-exported: callers import it from here)
from analysis.contexts import CachedText, display_tokens, load_cached_text, random_windows, top_windows
from analysis.dictionaries import load_sae
from analysis.results import (
    AutointerpResult,
    FeatureDiffResult,
    FeatureInterpretation,
    MMCSResult,
    ObjectiveComparison,
    StepFailure,
    Usage,
)
from rlhf.artifact import from_json, to_json
from rlhf.errors import UserError
from rlhf.lexicon import valence, words_of
from rlhf.rundir import RunDir, atomic_write_json, read_json
from rlhf.tokenizer import load_tokenizer

# -- prompts: every prompt in one place, versioned (a new version misses the cache on purpose) ------------------

PROMPT_VERSION = "2026-11-25.1"

EXPLAIN = """We are studying features of a language model's sparse autoencoder. Each feature fires on \
particular tokens in short texts. Below are texts where the feature fires, one token per line as \
"token<tab>activation", activations scaled to 0-10 (0 = silent). Look at the tokens with high \
activations and say, in one sentence, what the feature detects. Reply with that sentence only.

{examples}"""

SIMULATE = """A feature of a language model is explained as: "{explanation}"
For each of the {n} texts below, predict the feature's activation on every token, 0-10 \
(0 = silent), from the explanation alone. Reply with only a JSON array holding one array \
of numbers per text, in order, each with exactly as many numbers as the text has tokens.

{texts}"""

DETECT = """A feature of a language model is explained as: "{explanation}"
Which of the {n} texts below contain something this feature detects? Reply with only a \
JSON array of their numbers (for example [1, 4]); [] if none.

{texts}"""

CLASSIFY = """A language model was fine-tuned with a reward for positive sentiment. One of its \
features is explained as: "{explanation}"
Is this feature about sentiment, emotion or valence (the fine-tuning objective)? Answer yes or no."""


class Malformed(ValueError):
    """The endpoint answered, but not with what the prompt asked for."""


class RequestFailed(RuntimeError):
    """A request that still failed after its retries."""


# -- the cached client -----------------------------------------------------------------------------------------


class CachedChat:
    """Chat completions with an on-disk cache, retries and usage accounting (thread-safe)."""

    RETRY = (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError, openai.APIConnectionError,
             openai.APIResponseValidationError, Malformed)
    FATAL = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)

    def __init__(self, cfg: AutointerpConfig, cache_dir: Path, api_key: str):
        self.cfg, self.cache_dir, self._key = cfg, cache_dir, api_key
        self.client = openai.OpenAI(base_url=cfg.base_url, api_key=api_key or "no-key", max_retries=0,
                                    timeout=cfg.timeout_seconds)
        self.lock = threading.Lock()
        self.sent = 0

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def ask(self, prompt: str, parse: Callable[[str], Any], max_tokens: int) -> tuple[Any, Usage]:
        """The parsed answer and its usage (one request, cached or not)."""
        messages = [{"role": "user", "content": prompt}]
        key = hashlib.sha256(json.dumps({"model": self.cfg.model, "messages": messages}, sort_keys=True).encode()).hexdigest()
        path = self.cache_dir / f"{key}.json"
        if path.exists():
            record = read_json(path)
            return parse(record["content"]), replace(from_json(Usage, record["usage"]), requests=1, cached=1)
        last: Exception | None = None
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                time.sleep(self.cfg.backoff_seconds * 2 ** (attempt - 1))
            try:
                with self.lock:
                    self.sent += 1
                response = self.client.chat.completions.create(model=self.cfg.model, messages=messages, temperature=0,
                                                               max_tokens=max_tokens)
                content = _content(response)
                parsed = parse(content)
            except self.FATAL as e:
                raise UserError(f"the endpoint {self.cfg.base_url} refused the request ({type(e).__name__}: "
                                f"{self._redact(str(e))[:200]}); check [autointerp] model and the key in "
                                f"${self.cfg.api_key_env}") from None
            except self.RETRY as e:
                last = e
                continue
            except openai.APIStatusError as e:  # other 4xx: the request itself is wrong, retrying will not help
                raise RequestFailed(f"HTTP {e.status_code}: {self._redact(str(e))[:200]}") from None
            usage = response.usage
            counts = {"prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
                      "completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0)}
            atomic_write_json(path, {"model": self.cfg.model, "prompt_version": PROMPT_VERSION, "messages": messages,
                                     "content": content, "usage": counts})
            return parsed, Usage(**counts, requests=1)
        raise RequestFailed(f"no usable answer after {self.cfg.max_retries + 1} attempts: "
                            f"{type(last).__name__}: {self._redact(str(last))[:200]}")


def _content(response: Any) -> str:
    choices = getattr(response, "choices", None)
    if not choices:
        raise Malformed("the response has no choices")
    content = getattr(getattr(choices[0], "message", None), "content", None)
    if not isinstance(content, str) or not content.strip():
        raise Malformed("the response's first choice has no text")
    return content


# -- answers ---------------------------------------------------------------------------------------------------


def _json(content: str) -> Any:
    text = re.sub(r"^```(?:json)?\s*|\s*```$", "", content.strip())
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise Malformed(f"not JSON: {content[:80]!r}") from e


def parse_simulation(lengths: list[int]) -> Callable[[str], list[list[float]]]:
    def parse(content: str) -> list[list[float]]:
        data = _json(content)
        if not isinstance(data, list) or len(data) != len(lengths):
            raise Malformed(f"expected {len(lengths)} arrays, got {str(data)[:80]}")
        for row, n in zip(data, lengths):
            if not isinstance(row, list) or len(row) != n or not all(isinstance(v, (int, float)) for v in row):
                raise Malformed(f"expected {n} numbers for a text, got {str(row)[:80]}")
        return [[float(v) for v in row] for row in data]

    return parse


def parse_detection(n: int) -> Callable[[str], list[int]]:
    def parse(content: str) -> list[int]:
        data = _json(content)
        if not isinstance(data, list) or not all(isinstance(v, int) and 1 <= v <= n for v in data):
            raise Malformed(f"expected text numbers 1..{n}, got {str(data)[:80]}")
        return sorted(set(data))

    return parse


def parse_sentence(content: str) -> str:
    sentence = content.strip().strip('"').splitlines()[0].strip()
    if not sentence:
        raise Malformed("empty explanation")
    return sentence


def parse_yes_no(content: str) -> bool:
    word = content.strip().lower().split()[0].strip(".,!") if content.strip() else ""
    if word not in ("yes", "no"):
        raise Malformed(f"expected yes or no, got {content[:40]!r}")
    return word == "yes"


def explanation_utility(explanation: str) -> float:
    """The paper's measure: the summed |VADER valence| of the explanation's words."""
    return float(sum(abs(valence(w)) for w in words_of(explanation)))


# -- examples --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureJob:
    """A feature to interpret: an SAE latent of one model at one hook, and why it was chosen."""

    model: str
    hook: str
    feature: int
    reason: str  # "shared top-k" or "diff"


@dataclass(frozen=True)
class Window:
    tokens: list[str]
    activations: list[float]


@dataclass(frozen=True)
class FeatureExamples:
    """What the explainer is shown (top and random windows), and the held-out windows it is scored on."""

    explain: list[Window]
    score_top: list[Window]
    score_silent: list[Window]  # as many as score_top, where the feature never fires


def _format(window: Window, scale: float) -> str:
    return "\n".join(f"{t.strip() or repr(t)}\t{round(10 * a / scale) if scale > 0 else 0}"
                     for t, a in zip(window.tokens, window.activations))


def _numbered(windows: list[Window]) -> str:
    return "\n\n".join(f"Text {i + 1} ({len(w.tokens)} tokens): " + json.dumps([t.strip() or t for t in w.tokens])
                       for i, w in enumerate(windows))


def feature_examples(values: Float[Tensor, " n"], text: CachedText, strings: Callable[[list[int]], list[str]],
                     cfg: AutointerpConfig, seed: int) -> FeatureExamples:
    """Windows for the explainer (top and random) and held-out ones for scoring (top and silent)."""
    top = top_windows(values, text, cfg.n_explain + cfg.n_score, cfg.context, cfg.context // 3)
    # Every other top window is held out for scoring, so both sets hold strong examples.
    explain_top = [w for i, w in enumerate(top) if i % 2 == 0 or i >= 2 * cfg.n_score][: cfg.n_explain]
    score_top = [w for w in top if w not in explain_top][: cfg.n_score]
    used = {t for t, (s, e) in enumerate(text.spans) for lo, _ in top if s <= lo < e}
    randoms = random_windows(text, cfg.n_random + 4 * cfg.n_score, 2 * cfg.context, seed, exclude=used)
    silent = [w for w in randoms if float(values[w[0]:w[1]].max()) <= 0]

    def windows(spans: list[tuple[int, int]]) -> list[Window]:
        return [Window(strings(text.tokens[lo:hi].tolist()), values[lo:hi].tolist()) for lo, hi in spans]

    return FeatureExamples(explain=windows(explain_top + randoms[: cfg.n_random]), score_top=windows(score_top),
                           score_silent=windows(silent[: len(score_top)]))


def _pearson(a: list[float], b: list[float]) -> float:
    x, y = np.asarray(a, float), np.asarray(b, float)
    if x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


Ask = Callable[[str, str, Callable[[str], Any], int], Any]  # (step, prompt, parse, max_tokens) -> answer or None


def _simulate_and_detect(ask: Ask, explanation: str, examples: FeatureExamples,
                         scale: float) -> tuple[float | None, float | None]:
    """The simulation and detection scores of an explanation on the held-out windows (None where a step failed)."""
    scored = examples.score_top + examples.score_silent
    if not scored:
        return None, None
    simulation = detection = None
    lengths = [len(w.tokens) for w in scored]
    simulated = ask("simulate", SIMULATE.format(explanation=explanation, n=len(scored), texts=_numbered(scored)),
                    parse_simulation(lengths), 40 + 6 * sum(lengths))
    if simulated is not None:
        truth = [10 * a / scale if scale > 0 else 0.0 for w in scored for a in w.activations]
        simulation = _pearson([v for row in simulated for v in row], truth)
    order = list(range(len(scored)))
    np.random.default_rng(len(scored)).shuffle(order)
    mixed = [scored[i] for i in order]
    picked = ask("detect", DETECT.format(explanation=explanation, n=len(mixed), texts=_numbered(mixed)),
                 parse_detection(len(mixed)), 60)
    if picked is not None:
        active = [order[k] < len(examples.score_top) for k in range(len(mixed))]
        chosen = [k + 1 in picked for k in range(len(mixed))]
        tpr = np.mean([c for c, a in zip(chosen, active) if a]) if any(active) else float("nan")
        tnr = np.mean([not c for c, a in zip(chosen, active) if not a]) if not all(active) else float("nan")
        detection = float(np.nanmean([tpr, tnr]))
    return simulation, detection


def interpret_feature(chat: CachedChat, job: FeatureJob, examples: FeatureExamples) -> FeatureInterpretation:
    """Explain, simulate, detect and classify one feature; a failed step is recorded, not raised."""
    scale = max([a for w in examples.explain + examples.score_top for a in w.activations] + [0.0])
    failures: list[StepFailure] = []
    usage = Usage()

    def ask(step: str, prompt: str, parse: Callable[[str], Any], max_tokens: int) -> Any:
        nonlocal usage
        try:
            answer, used = chat.ask(prompt, parse, max_tokens)
        except RequestFailed as e:
            failures.append(StepFailure(step=step, error=str(e)))
            return None
        usage += used
        return answer

    explanation = ask("explain", EXPLAIN.format(examples="\n\n".join(_format(w, scale) for w in examples.explain)),
                      parse_sentence, 120)
    simulation = detection = related = None
    if explanation is not None:
        simulation, detection = _simulate_and_detect(ask, explanation, examples, scale)
        related = ask("classify", CLASSIFY.format(explanation=explanation), parse_yes_no, 5)
    return FeatureInterpretation(
        model=job.model, hook=job.hook, feature=job.feature, reason=job.reason, failures=tuple(failures), usage=usage,
        explanation=explanation, explanation_utility=None if explanation is None else explanation_utility(explanation),
        simulation_score=simulation, detection_score=detection, related_to_objective=related)


# -- the stage -------------------------------------------------------------------------------------------------


def chosen_features(run_dir: RunDir, cfg: AutointerpConfig) -> list[FeatureJob]:
    """The MMCS-shared top-k of each model and hook, and the policy's carded diff features."""
    reasons: dict[tuple[str, str, int], str] = {}
    mmcs = MMCSResult.load_if_exists(run_dir)
    if mmcs is not None:
        for row in mmcs.within:
            if row.small == cfg.size:
                for s in row.shared[: cfg.top_k]:
                    reasons.setdefault((row.model, row.hook, s.feature), "shared top-k")
    diff = FeatureDiffResult.load_if_exists(run_dir)
    if diff is not None:
        for h in diff.hooks:
            for f in h.cards:
                reasons.setdefault(("policy", h.hook, f), "diff")
    return [FeatureJob(m, h, f, reason) for (m, h, f), reason in sorted(reasons.items())]


def _cost(usage: Usage, cfg: AutointerpConfig) -> float | None:
    price = cfg.prices.get(cfg.model)
    if price is None:
        return None
    return usage.prompt_tokens * price[0] / 1e6 + usage.completion_tokens * price[1] / 1e6


def _feature_path(run_dir: RunDir, job: FeatureJob) -> Path:
    return AutointerpResult.feature_path(run_dir, job.model, job.hook, job.feature)


def _load_feature(path: Path) -> FeatureInterpretation:
    return from_json(FeatureInterpretation, read_json(path), where=str(path))


def autointerp_stage(cfg: AutointerpConfig, run_dir: RunDir) -> AutointerpResult | None:
    """Stage: ``autointerp/results.json`` (+ one file per feature and the request cache)."""
    if not cfg.base_url:
        print("[autointerp] skipped: no endpoint configured (set [autointerp] base_url, and the key in "
              f"${cfg.api_key_env}); the rest of the study does not need it", flush=True)
        return None
    started = time.time()
    chat = CachedChat(cfg, AutointerpResult.cache_dir(run_dir), os.environ.get(cfg.api_key_env, ""))
    jobs = chosen_features(run_dir, cfg)
    if not jobs:
        raise UserError("no features to interpret: run the mmcs and feature_diff stages first")
    tokenizer = load_tokenizer(run_dir.policy)
    results: list[FeatureInterpretation] = []
    pending = []
    for job in jobs:
        path = _feature_path(run_dir, job)
        done = _load_feature(path) if path.exists() else None
        if done is not None and not done.failures:
            results.append(done)
        else:
            pending.append(job)
    # Examples per (model, hook): one pass over its held-out cache encodes every feature at once.
    examples: dict[FeatureJob, FeatureExamples] = {}
    for model, hook in sorted({(j.model, j.hook) for j in pending}):
        sae = load_sae(run_dir.sae(model, hook, cfg.size))
        with torch.no_grad():
            codes = torch.cat([sae.encode(x) for x in load_shards(run_dir.activations(model, hook, "val"))])
        text = load_cached_text(run_dir.activations(model, hook, "val"))
        for j in pending:
            if (j.model, j.hook) == (model, hook):
                examples[j] = feature_examples(codes[:, j.feature], text, lambda ids: display_tokens(tokenizer, ids), cfg,
                                               seed=j.feature)

    def run(job: FeatureJob) -> FeatureInterpretation:
        result = interpret_feature(chat, job, examples[job])
        result = replace(result, cost_usd=_cost(result.usage, cfg))
        atomic_write_json(_feature_path(run_dir, job), to_json(result))  # a finished feature survives a killed run
        return result

    with ThreadPoolExecutor(max_workers=cfg.max_concurrency) as pool:
        results += list(tqdm(pool.map(run, pending), total=len(pending), desc="autointerp", unit="feature"))
    results.sort(key=lambda r: (r.model, r.hook, r.feature))
    total = sum((r.usage for r in results), Usage())
    comparison = {}
    for model in sorted({r.model for r in results}):
        rows = [r for r in results if r.model == model and r.reason == "shared top-k" and r.explanation]
        related = [r.related_to_objective for r in rows if r.related_to_objective is not None]
        comparison[model] = ObjectiveComparison(
            features=len(rows),
            mean_explanation_utility=float(np.mean([r.explanation_utility for r in rows])) if rows else math.nan,
            share_related_to_objective=float(np.mean(related)) if related else math.nan,
        )
    result = AutointerpResult(
        model=cfg.model, base_url=cfg.base_url, prompt_version=PROMPT_VERSION, features=tuple(results),
        usage=total, cost_usd=_cost(total, cfg), requests_sent_this_run=chat.sent,
        failed_features=sum(bool(r.failures) for r in results), comparison=comparison,
        mean_simulation_score=_nanmean([r.simulation_score for r in results]),
        mean_detection_score=_nanmean([r.detection_score for r in results]),
        seconds=time.time() - started, config=asdict(cfg))
    result.save(run_dir)
    return result


def _nanmean(values: list[float | None]) -> float:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan

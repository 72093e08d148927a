"""Activation caches and SAE-Lens dictionaries on the tiny study."""

import shutil

import pytest
import torch
from safetensors.torch import load_file

from analysis.activations import (
    ActivationCacheConfig,
    cache_split,
    check_hook_names,
    load_shards,
)
from analysis.dictionaries import DictionaryConfig, dictionaries_stage, load_sae
from analysis.results import ActivationIndex, CachedHook, SAEIndex, SAEQualityResult
from analysis.sae_quality import reconstruction_metrics
from rlhf.errors import UserError
from rlhf.hooked import to_hooked
from rlhf.rundir import RunDir
from study.config import config_from_dict


def test_cache_equals_run_with_cache_without_padding(tiny_run):
    _, run_dir, _ = tiny_run
    index = ActivationIndex.load(run_dir)
    hook = index.hooks[0]
    assert index.by_layer[index.layers[0]] == hook and index.texts["val"] > 0
    texts = run_dir.texts("val")[:200]
    shard = load_file(str(run_dir.activations("policy", hook, "val") / "shard_00000.safetensors"))
    model = to_hooked(run_dir.policy)
    expected, tokens = [], []
    for text in texts:
        ids = model.tokenizer(text, return_tensors="pt")["input_ids"]
        _, cache = model.run_with_cache(ids, names_filter=[hook])
        expected.append(cache[hook][0, 1:])  # every real token but BOS
        tokens.append(ids[0, 1:])
    assert torch.equal(shard["tokens"], torch.cat(tokens))
    assert model.tokenizer.pad_token_id not in shard["tokens"].tolist()
    assert torch.allclose(shard["activations"], torch.cat(expected), atol=1e-5)
    assert len(shard["activations"]) == index.tokens("policy", "val", hook)
    assert CachedHook.read(run_dir.activations("policy", hook, "val")).n_tokens == index.tokens("policy", "val", hook)


def test_base_and_policy_cached_on_the_same_tokens(tiny_run):
    _, run_dir, _ = tiny_run
    hook = ActivationIndex.load(run_dir).hooks[-1]
    a = load_file(str(run_dir.activations("base", hook, "train") / "shard_00000.safetensors"))
    b = load_file(str(run_dir.activations("policy", hook, "train") / "shard_00000.safetensors"))
    assert torch.equal(a["tokens"], b["tokens"]) and not torch.equal(a["activations"], b["activations"])


def test_wrong_hook_lists_the_valid_ones(tiny_run):
    _, run_dir, _ = tiny_run
    with pytest.raises(UserError, match=r"unknown hook name\(s\) blocks.0.hook_mlp_outt; valid hooks: .*blocks.0.hook_mlp_out"):
        check_hook_names(to_hooked(run_dir.base), ["blocks.0.hook_mlp_outt"])


def test_nan_activations_stop_with_their_location(tiny_run, tmp_path):
    _, run_dir, _ = tiny_run
    model = to_hooked(run_dir.base)
    model.blocks[0].mlp.W_out.data[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"non-finite activation at blocks.0.hook_mlp_out, base/val, text 0, token 1"):
        cache_split(model, ["the plot was superb ."], ["blocks.0.hook_mlp_out"], lambda h: tmp_path / h,
                    ActivationCacheConfig(), where="base/val")


def test_caching_resumes_shard_by_shard(tiny_run, tmp_path):
    _, run_dir, _ = tiny_run
    model = to_hooked(run_dir.base)
    texts = run_dir.texts("val")[:100]
    cfg = ActivationCacheConfig(shard_texts=30)
    cache_split(model, texts, ["blocks.1.hook_mlp_out"], lambda h: tmp_path / h, cfg, where="x")
    shards = sorted((tmp_path / "blocks.1.hook_mlp_out").glob("shard_*"))
    assert len(shards) == 4
    shards[2].unlink()  # as if killed while writing shard 2
    before = {p.name: p.stat().st_mtime_ns for p in shards if p.exists()}
    cache_split(model, texts, ["blocks.1.hook_mlp_out"], lambda h: tmp_path / h, cfg, where="x")
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "blocks.1.hook_mlp_out").glob("shard_*")}
    assert set(after) == {p.name for p in shards}
    assert all(after[n] == t for n, t in before.items()), "finished shards are not rewritten"


def test_half_precision_model_and_storage(tiny_run, tmp_path):
    """Large models cache in bf16 with activations stored in bf16 (half the disk); readers get float32."""
    _, run_dir, _ = tiny_run
    texts = run_dir.texts("val")[:40]
    hook = "blocks.1.hook_mlp_out"
    full = to_hooked(run_dir.base)
    half = to_hooked(run_dir.base, dtype=torch.bfloat16, atol=0.5)
    assert half.cfg.dtype == torch.bfloat16
    cache_split(full, texts, [hook], lambda h: tmp_path / "full" / h, ActivationCacheConfig(), where="x")
    cache_split(half, texts, [hook], lambda h: tmp_path / "half" / h, ActivationCacheConfig(dtype="bfloat16"), where="x")
    stored = load_file(str(tmp_path / "half" / hook / "shard_00000.safetensors"))["activations"]
    assert stored.dtype == torch.bfloat16
    a, b = next(load_shards(tmp_path / "full" / hook)), next(load_shards(tmp_path / "half" / hook))
    assert b.dtype == torch.float32 and a.shape == b.shape
    assert (a - b).norm() / a.norm() < 0.05  # bf16 rounding, not a different computation
    # A wrong dtype is refused when the config loads, naming the key (not after the training stages).
    with pytest.raises(UserError, match="activations.dtype must be one of 'float32', 'bfloat16', 'float16'; got 'int8'"):
        config_from_dict({"activations": {"dtype": "int8"}})
    with pytest.raises(UserError, match="activations.model_dtype must be one of"):
        config_from_dict({"activations": {"model_dtype": "fp8"}})


def test_saes_reload_and_reproduce_their_reconstruction(tiny_run):
    _, run_dir, _ = tiny_run
    index = SAEIndex.load(run_dir)
    entries = index.saes
    assert {e.size for e in entries} == {"1x", "2x"} and {e.model for e in entries} == {"base", "policy"}
    assert (index.small, index.big) == ("1x", "2x") and index.config.architecture == index.architecture
    entry = entries[-1]
    assert index.find(entry.model, entry.hook, entry.size) == entry
    sae = load_sae(run_dir.sae(entry.model, entry.hook, entry.size))
    assert sae.cfg.d_sae == 2 * sae.cfg.d_in and sae.W_dec.shape == (sae.cfg.d_sae, sae.cfg.d_in)
    assert (entry.d_sae, entry.d_in, entry.width) == (sae.cfg.d_sae, sae.cfg.d_in, 2.0)
    x = next(load_shards(run_dir.activations(entry.model, entry.hook, "val")))
    again = load_sae(run_dir.sae(entry.model, entry.hook, entry.size))
    with torch.no_grad():
        assert torch.allclose(sae.decode(sae.encode(x)), again.decode(again.encode(x)))
    metrics = reconstruction_metrics(sae, [x])
    row = SAEQualityResult.load(run_dir).find(entry.model, entry.hook, entry.size)
    assert metrics["explained_variance"] > 0.8
    assert row.explained_variance == pytest.approx(metrics["explained_variance"], abs=0.05)
    with pytest.raises(UserError, match="no 3x SAE for model 'policy'"):
        index.find("policy", entry.hook, "3x")


def test_sae_explained_variance_is_the_shared_one(tiny_run):
    """reconstruction_metrics uses analysis.metrics: 1 - SSE / summed squared deviation from the mean."""
    _, run_dir, _ = tiny_run
    entry = SAEIndex.load(run_dir).saes[0]
    sae = load_sae(run_dir.sae(entry.model, entry.hook, entry.size))
    x = next(load_shards(run_dir.activations(entry.model, entry.hook, "val"))).double()
    with torch.no_grad():
        r = sae.decode(sae.encode(x.float())).double()
    by_hand = 1 - float(((x - r) ** 2).sum()) / float(((x - x.mean(0)) ** 2).sum())
    got = reconstruction_metrics(sae, [x[: len(x) // 2].float(), x[len(x) // 2 :].float()])
    assert got["explained_variance"] == pytest.approx(by_hand, abs=1e-6)
    assert got["mse"] == pytest.approx(float(((x - r) ** 2).mean()), rel=1e-5)


def test_tiny_saes_are_good_dictionaries(tiny_run):
    _, run_dir, _ = tiny_run
    result = SAEQualityResult.load(run_dir)
    rows = result.saes
    index = SAEIndex.load(run_dir)
    assert len(rows) == len(index.saes) + len(index.transcoders) == (2 * 2 * 2 + 2 * 2 * 2 + 2 * 2 * 2)  # models x hooks x widths, and the transcoders
    for r in rows:
        # The tiny model's residual stream is denser than its MLP outputs, and a transcoder predicts one
        # activation from another: they explain less (0.76-0.82 and 0.84-0.92 measured).
        bar = 0.8 if r.kind == "sae" and r.hook.endswith("hook_mlp_out") else 0.7
        assert r.explained_variance > bar and r.dead_fraction < 0.3
        assert r.zero_ablated_loss >= r.clean_loss
        assert 0 < r.l0 < r.d_sae
    assert result.all_pass == all(r.passes for r in rows)


def test_finished_saes_are_not_retrained(tiny_run, tmp_path):
    cfg, run_dir, _ = tiny_run
    copy = RunDir(tmp_path / "tiny")
    shutil.copytree(run_dir.root, copy.root)
    entries = SAEIndex.load(copy).saes
    where = {e: copy.sae(e.model, e.hook, e.size) for e in entries}
    stamps = {e: (where[e] / "sae_weights.safetensors").stat().st_mtime_ns for e in entries}
    shutil.rmtree(where[entries[0]])  # as if killed during this SAE
    result = dictionaries_stage(DictionaryConfig(**{**cfg.dictionaries.__dict__, "training_tokens": 20000}), copy)
    assert (where[entries[0]] / "cfg.json").exists()
    for e in entries[1:]:
        assert (where[e] / "sae_weights.safetensors").stat().st_mtime_ns == stamps[e]
    assert SAEIndex.load(copy) == result and result.config.training_tokens == 20000


@pytest.mark.parametrize("architecture", ["topk", "batchtopk"])
def test_topk_architectures_train_and_reload(tiny_run, tmp_path, architecture):
    _, run_dir, _ = tiny_run
    from analysis.dictionaries import train_sae

    hook = ActivationIndex.load(run_dir).hooks[0]
    out = train_sae(DictionaryConfig(architecture=architecture, k=8, training_tokens=150_000, batch_size=1024),
                    run_dir.activations("base", hook, "train"), 1.0, tmp_path / architecture)
    sae = load_sae(out)
    x = next(load_shards(run_dir.activations("base", hook, "val")))
    with torch.no_grad():
        codes = sae.encode(x)
    l0 = float((codes > 0).sum(1).float().mean())
    # TopK keeps exactly k per token; BatchTopK keeps k per token on average over a batch in
    # training and turns into a learned threshold for inference.
    assert l0 <= 8.0 + 1e-6 if architecture == "topk" else 2 <= l0 <= 16
    assert reconstruction_metrics(sae, [x])["explained_variance"] > 0.6


def test_unknown_architecture_is_refused():
    from analysis.dictionaries import make_sae
    from analysis.results import SAETraining

    with pytest.raises(UserError, match="dictionaries.architecture must be one of 'standard', 'topk', 'batchtopk'; got 'gated'"):
        config_from_dict({"dictionaries": {"architecture": "gated"}})
    # A recorded setting (saes/index.json, a plain str) is still checked where it is used.
    recorded = SAETraining("gated", (1.0,), 5.0, 16, 1000, 64, 1e-3, 0)
    with pytest.raises(UserError, match="architecture must be one of 'standard', 'topk', 'batchtopk'; got 'gated'"):
        make_sae(recorded, 16, 1.0)


def test_every_dictionary_kind_reads_settings_the_stage_has():
    from dataclasses import fields

    from analysis.dictionary_kinds import DICTIONARY_KINDS

    settings = {f.name for f in fields(DictionaryConfig)}
    assert all(set(kind.reads) <= settings for kind in DICTIONARY_KINDS.values())


def test_a_new_dictionary_kind_is_one_module_and_one_registry_entry(tiny_run, tmp_path, monkeypatch):
    """tests/dictionary_kind_example.py registered with one entry: a config naming it loads (and an unknown
    name is refused at load, listing it), the dictionaries stage trains it on the tiny study's cache, and
    its index and the report name it."""
    from analysis.dictionary_kinds import DICTIONARY_KINDS, DictionaryKind
    from study.report import build_report

    _, run_dir, _ = tiny_run
    copy = RunDir(tmp_path / "tiny")  # the cache and the SAEs' metrics; the new kind's SAEs are trained afresh
    shutil.copytree(run_dir.root, copy.root, ignore=shutil.ignore_patterns("saes", "report"))
    monkeypatch.setitem(DICTIONARY_KINDS, "jumprelu", DictionaryKind("tests.dictionary_kind_example:jumprelu",
                                                                     "JumpReLU SAE with an L0 penalty", ("l1_coefficient",)))
    cfg = config_from_dict({"dictionaries": {"architecture": "jumprelu", "widths": [1.0], "l1_coefficient": 0.01,
                                             "training_tokens": 4096, "batch_size": 512}}).dictionaries
    with pytest.raises(UserError) as caught:
        config_from_dict({"dictionaries": {"architecture": "jumprelu2"}})
    assert str(caught.value) == ("dictionaries.architecture must be one of 'standard', 'topk', 'batchtopk', 'jumprelu'; "
                                 "got 'jumprelu2'")
    result = dictionaries_stage(cfg, copy)
    assert result.architecture == SAEIndex.load(copy).architecture == "jumprelu"
    assert len(result.saes) == 2 * len(ActivationIndex.load(copy).all_hooks)  # models x every cached hook
    assert {load_sae(copy.root / e.path).cfg.architecture() for e in result.saes} == {"jumprelu"}
    assert "JumpReLU SAE with an L0 penalty (jumprelu, l1_coefficient 0.01)" in build_report(copy).read_text()


def test_dictionary_sizes_are_checked_at_load():
    with pytest.raises(UserError, match=r"dictionaries.widths\[1\] must be > 0"):
        config_from_dict({"dictionaries": {"widths": [1.0, -2.0]}})
    with pytest.raises(UserError, match="activations.shard_texts must be > 0"):
        config_from_dict({"activations": {"shard_texts": 0}})
    with pytest.raises(UserError, match="activations.hook is not a TransformerLens hook name"):
        config_from_dict({"activations": {"hook": "blocks.{layer}.hook_mlp_outt"}})


# The demo policy's last MLP (zeroing it costs 0.0078 nats/token) and its first (zeroing costs 3.07).
CHEAP_SPLICE = {"explained_variance": 0.99, "dead_fraction": 0.02, "clean_loss": 3.2248, "spliced_loss": 3.2283,
                "zero_ablated_loss": 3.2326, "lm_loss_recovered": 0.553}
COSTLY_SPLICE = {**CHEAP_SPLICE, "spliced_loss": 3.2448, "zero_ablated_loss": 3.2848, "lm_loss_recovered": 0.667}


def test_the_lm_loss_bar_passes_a_cheap_splice_whatever_its_ratio():
    """Recovered 0.55 at a splice costing 0.0035 nats/token passes (the floor, 0.01); 0.67 at a cost of
    0.02 fails; without the floor the ratio alone decides. The report's check says the same."""
    from analysis.results import QualityBars, SAEMetrics, SAEQualityResult
    from analysis.sae_quality import QualityConfig, meets_bars
    from study.report.sections.dictionaries import _loss_check

    cfg = QualityConfig()
    assert meets_bars(CHEAP_SPLICE, cfg) and not meets_bars(COSTLY_SPLICE, cfg)
    assert not meets_bars(CHEAP_SPLICE, QualityConfig(max_splice_cost=0.0))

    def result(*numbers):
        rows = tuple(SAEMetrics(model="policy", hook=f"blocks.{i}.hook_mlp_out", size="1x", path="", d_sae=8, mse=0.0,
                                l0=1.0, tokens=1, passes=meets_bars(n, cfg), **n) for i, n in enumerate(numbers))
        return SAEQualityResult(saes=rows, bars=QualityBars(0.8, 0.8, 0.2, 0.01), all_pass=all(r.passes for r in rows),
                                seconds=0.0)

    check = _loss_check(result(CHEAP_SPLICE))
    assert check.passes and "splicing costs at most 0.01 nats/token" in check.label
    check = _loss_check(result(CHEAP_SPLICE, COSTLY_SPLICE))
    assert not check.passes and check.value == pytest.approx(0.667) and "worst of the 1 of 2" in check.label

"""MLP transcoders: trained from an MLP's input to its output, saved as SAE-Lens transcoders, scored by the
quality stage and read by reward attribution."""

from __future__ import annotations

import json

import pytest
import torch
from sae_lens import SAE
from sae_lens.saes.transcoder import Transcoder
from safetensors.torch import save_file

from analysis.config import DictionaryConfig
from analysis.dictionaries import dictionaries_stage
from analysis.results import CachedHook, RewardAttributionResult, SAEIndex, SAEQualityResult
from analysis.sae_quality import reconstruction_metrics
from analysis.transcoders import train_transcoder
from rlhf.errors import UserError
from rlhf.rundir import RunDir


def _cache(directory, activations: torch.Tensor, hook: str) -> None:
    directory.mkdir(parents=True)
    save_file({"activations": activations.contiguous(), "tokens": torch.zeros(len(activations), dtype=torch.long),
               "positions": torch.zeros(len(activations), dtype=torch.long)}, str(directory / "shard_00000.safetensors"))
    CachedHook(hook=hook, shards=("shard_00000.safetensors",), n_tokens=len(activations), n_texts=1,
               d=activations.shape[1], dtype="float32").write(directory)


def test_a_transcoder_learns_a_sparse_map_from_input_to_output(tmp_path):
    """Inputs are sparse non-negative mixtures of 32 directions (in 48 dimensions), outputs the same codes
    through 32 other directions: a 32-latent transcoder, reading only the input, explains the output
    with about as many active latents as there are active codes (2.6 on average)."""
    gen = torch.Generator().manual_seed(0)
    codes = torch.rand(20_000, 32, generator=gen) * (torch.rand(20_000, 32, generator=gen) < 0.08)
    inputs, outputs = codes @ torch.randn(32, 48, generator=gen), codes @ torch.randn(32, 48, generator=gen)
    _cache(tmp_path / "in", inputs, "blocks.0.ln2.hook_normalized")
    _cache(tmp_path / "out", outputs, "blocks.0.hook_mlp_out")
    cfg = DictionaryConfig(l1_coefficient=1.0, training_tokens=300_000, batch_size=512, learning_rate=3e-3)
    path = train_transcoder(cfg, tmp_path / "in", tmp_path / "out", 32, tmp_path / "tc", "blocks.0.hook_mlp_out")
    transcoder = SAE.load_from_disk(str(path))
    assert isinstance(transcoder, Transcoder) and transcoder.cfg.d_out == 48
    numbers = reconstruction_metrics(transcoder, [inputs[:4000]], [outputs[:4000]])
    assert numbers["explained_variance"] > 0.95 and numbers["l0"] < 4, numbers


def test_the_tiny_study_trains_scores_and_attributes_its_transcoders(tiny_run):
    cfg, run_dir, _ = tiny_run
    index = SAEIndex.load(run_dir)
    outputs = sorted({e.hook for e in index.transcoders})
    assert outputs == sorted(h for h in index.hooks if h.endswith("hook_mlp_out"))
    assert len(index.transcoders) == len(outputs) * 2 * len(cfg.dictionaries.widths)
    quality = [r for r in SAEQualityResult.load(run_dir).saes if r.kind == "transcoder"]
    assert len(quality) == len(index.transcoders)
    assert all(r.explained_variance > 0.7 and r.dead_fraction <= 0.2 for r in quality), quality
    curves = [c for c in RewardAttributionResult.load(run_dir).curves if c.dictionary == "transcoder_policy"]
    assert {c.hook for c in curves} == set(outputs), "read where they write, like any dictionary"


def test_transcoders_without_the_mlp_inputs_cached_is_a_one_line_error(tiny_run, tmp_path):
    _, run_dir, _ = tiny_run
    copy = RunDir(tmp_path / "run")
    copy.activations_index.parent.mkdir(parents=True)
    index = json.loads(run_dir.activations_index.read_text())
    copy.activations_index.write_text(json.dumps({**index, "transcoder_inputs": []}))
    with pytest.raises(UserError, match="set activations.transcoder_inputs = true"):
        dictionaries_stage(DictionaryConfig(transcoders=True), copy)

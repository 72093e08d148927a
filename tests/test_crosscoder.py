"""The BatchTopK crosscoder and latent scaling on synthetic activations with planted directions.

The synthetic pair mimics a base and its fine-tune: sparse sums of shared feature directions in both
streams, plus one direction written only by the policy (what the fine-tune added)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from analysis.crosscoder import (
    CrosscoderConfig,
    evaluate,
    latent_scaling,
    load_crosscoder,
    paired_stream,
    plot_relative_norms,
    relative_norms,
    save_crosscoder,
    train_crosscoder,
)
from rlhf.errors import UserError

D, N_SHARED = 32, 40


def directions() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    dirs = torch.randn(N_SHARED + 1, D, generator=g)
    return dirs / dirs.norm(dim=-1, keepdim=True)


def synthetic(n: int, seed: int) -> torch.Tensor:
    """(n, 2, D): sparse sums of shared directions in both models; the last direction only in the policy."""
    dirs = directions()
    g = torch.Generator().manual_seed(seed)
    rate = torch.full((N_SHARED + 1,), 0.06)
    rate[-1] = 0.15  # the fine-tune's new direction, as common as a few shared ones together
    codes = (torch.rand(n, N_SHARED + 1, generator=g) < rate) * (torch.rand(n, N_SHARED + 1, generator=g) + 0.5)
    shared = codes[:, :N_SHARED] @ dirs[:N_SHARED]
    base = shared + 0.01 * torch.randn(n, D, generator=g)
    policy = shared + codes[:, N_SHARED:] @ dirs[N_SHARED:] + 0.01 * torch.randn(n, D, generator=g)
    return torch.stack([base, policy], 1)


def batches(seed: int, size: int = 1024):
    while True:
        yield synthetic(size, seed)
        seed += 1


@pytest.fixture(scope="module")
def trained():
    # The default recipe; 48 latents for the 41 planted features (the demo's defaults are sized likewise).
    cfg = CrosscoderConfig(expansion=1.5, k=4, training_tokens=400_000)
    model = train_crosscoder(cfg, batches(1), sources=[0, 1], targets=[0, 1])
    held = [synthetic(1024, 10_000 + i) for i in range(8)]
    return model, held


def _best(model, target: int, direction: torch.Tensor) -> tuple[int, float]:
    cos = torch.nn.functional.cosine_similarity(model.W_dec[:, target].detach(), direction[None], dim=-1)
    return int(cos.argmax()), float(cos.max())


def test_recovers_a_shared_and_a_policy_only_direction(trained):
    model, held = trained
    metrics = evaluate(model, held, [0, 1], [0, 1])
    assert min(metrics.explained_variance) > 0.85 and metrics.l0 < 8
    dirs = directions()
    rel = relative_norms(model).detach()
    shared, cos_shared = _best(model, 1, dirs[0])
    assert cos_shared > 0.95 and _best(model, 0, dirs[0])[0] == shared  # one latent, both decoders on it
    assert 0.4 < rel[shared] < 0.6
    specific, cos_specific = _best(model, 1, dirs[-1])
    assert cos_specific > 0.95 and rel[specific] > 0.8


def test_finds_the_planted_policy_only_direction_with_few_dead_latents(trained):
    model, held = trained
    metrics = evaluate(model, held, [0, 1], [0, 1])
    # At most the surplus of latents over planted features stays silent (AuxK revives the rest).
    assert metrics.dead_fraction <= (model.n_latents - N_SHARED - 1) / model.n_latents
    specific, cos_specific = _best(model, 1, directions()[-1])
    assert cos_specific > 0.9  # its policy decoder is the planted direction
    assert float(relative_norms(model).detach()[specific]) > 0.9  # and its base decoder is (nearly) empty: policy-only
    assert metrics.firing_frequency[specific] > 0.05  # it fires on held-out tokens (planted at 0.15)


def test_latent_scaling_separates_them(trained):
    model, held = trained
    dirs = directions()
    scaling = latent_scaling(model, held)
    shared, specific = _best(model, 1, dirs[0])[0], _best(model, 1, dirs[-1])[0]
    for key in ("nu_error", "nu_recon"):
        assert 0.8 < scaling[key][shared] < 1.25, key  # the base explains it as well as the policy does
        assert abs(scaling[key][specific]) < 0.3, key  # the base does not
    assert 0.8 < scaling["beta_error_policy"][specific] < 1.25


def test_difference_dictionary_reads_base_and_writes_policy():
    cfg = CrosscoderConfig(expansion=2.0, k=4, training_tokens=200_000)
    model = train_crosscoder(cfg, batches(3), sources=[0], targets=[1])
    metrics = evaluate(model, [synthetic(1024, 20_000)], [0], [1])
    # The policy-only direction is invisible in the base, so its variance stays unexplained; the rest is explained.
    assert 0.6 < metrics.explained_variance[0] < 0.99
    assert model.W_enc.shape == (1, D, 64) and model.W_dec.shape == (64, 1, D)  # expansion 2


def test_save_and_load_round_trip(trained, tmp_path):
    model, held = trained
    path = save_crosscoder(model, tmp_path / "crosscoder.safetensors")
    again = load_crosscoder(path)
    x = held[0]
    assert torch.equal(model(x)[1], again(x)[1])
    with pytest.raises(UserError, match="no crosscoder"):
        load_crosscoder(tmp_path / "missing.safetensors")
    # A file saved before the recipe marker (an old run's dead-latent crosscoder) is refused, not reused.
    state = load_file(str(path))
    del state["recipe"]
    save_file(state, str(tmp_path / "old.safetensors"))
    with pytest.raises(UserError, match="older crosscoder recipe; delete it and re-run model_diffing"):
        load_crosscoder(tmp_path / "old.safetensors")


def test_plot_relative_norms_writes_a_png(trained, tmp_path):
    model, _ = trained
    rel = relative_norms(model).detach().tolist()
    path = plot_relative_norms(tmp_path / "rel.png", {"seed 0": rel, "seed 1": rel[::-1]}, title="t", threshold=0.7)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_paired_stream_refuses_caches_of_different_tokens(tmp_path):
    from analysis.results import CachedHook

    for name, tokens in (("a", [1, 2, 3]), ("b", [1, 2, 4])):
        (tmp_path / name).mkdir()
        save_file({"activations": torch.zeros(3, 4), "tokens": torch.tensor(tokens)}, str(tmp_path / name / "s.safetensors"))
        CachedHook("blocks.0.hook_mlp_out", ("s.safetensors",), n_tokens=3, n_texts=1, d=4, dtype="float32").write(
            tmp_path / name)
    with pytest.raises(UserError, match="different tokens"):
        next(paired_stream([tmp_path / "a", tmp_path / "b"], 2, 0))
    with pytest.raises(UserError, match="non-finite"):
        train_crosscoder(CrosscoderConfig(), iter([torch.full((4, 2, 3), float("nan"))]), [0, 1], [0, 1])


def test_evaluate_explained_variance_is_the_shared_one_per_target(trained):
    """The crosscoder's explained variance is analysis.metrics' (one per target), whatever the batching."""
    model, held = trained
    metrics = evaluate(model, held, [0, 1], [0, 1])
    x = torch.cat(held)
    with torch.no_grad():
        recon = model(x)[1]
    by_hand = [1 - float(((x[:, t] - recon[:, t]) ** 2).sum() / ((x[:, t] - x[:, t].mean(0)) ** 2).sum()) for t in (0, 1)]
    assert metrics.explained_variance == pytest.approx(by_hand, abs=1e-5)

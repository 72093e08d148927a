import pytest
import torch

from analysis.mmcs import hungarian_cosine, max_cosine, mmcs, random_directions
from rlhf.errors import UserError


def test_identical_and_permuted_dictionaries_match_perfectly():
    d = random_directions(50, 16, seed=1) * torch.rand(50, 1).add(0.5)  # scale does not matter
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(0))
    values, index = max_cosine(d, d[perm])
    assert torch.allclose(values, torch.ones(50), atol=1e-5)
    assert torch.equal(perm[index], torch.arange(50))
    assert mmcs(d, d[perm], "hungarian") == pytest.approx(1.0, abs=1e-5)


def test_hand_computed_cosines():
    d1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    d2 = torch.tensor([[1.0, 1.0], [3.0, 0.0]])
    values, index = max_cosine(d1, d2)
    assert values.tolist() == pytest.approx([1.0, 2**-0.5]) and index.tolist() == [1, 0]
    assert mmcs(d1, d2) == pytest.approx((1 + 2**-0.5) / 2)
    # Hungarian cannot give both rows their best match when it is the same column.
    d3 = torch.tensor([[1.0, 0.0], [0.9, 0.1]])
    assert mmcs(d3, d1, "max") > mmcs(d3, d1, "hungarian")
    values, pairs = hungarian_cosine(d3, d1)
    assert sorted(pairs[:, 1].tolist()) == [0, 1]


def test_chunking_changes_nothing():
    a, b = random_directions(300, 8, seed=2), random_directions(70, 8, seed=3)
    v1, i1 = max_cosine(a, b, chunk=7)
    v2, i2 = max_cosine(a, b, chunk=4096)
    assert torch.equal(i1, i2) and torch.allclose(v1, v2)


def test_random_directions_are_the_low_null():
    assert mmcs(random_directions(64, 64, 0), random_directions(128, 64, 1)) < 0.5


def test_bad_dictionaries_are_named():
    with pytest.raises(UserError, match="zero-norm rows \\(first: row 1\\)"):
        mmcs(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.eye(2))
    with pytest.raises(UserError, match="different spaces: d = 2 vs 3"):
        mmcs(torch.eye(2), torch.eye(3))
    with pytest.raises(UserError, match="matching must be"):
        mmcs(torch.eye(2), torch.eye(2), "greedy")


def test_study_mmcs_against_its_nulls(tiny_run):
    from analysis.results import MMCSResult, SAEIndex

    _, run_dir, _ = tiny_run
    m = MMCSResult.load(run_dir)
    assert len(m.within) == 2 * len(SAEIndex.load(run_dir).hooks)  # models x every hook with dictionaries
    seed = SAEIndex.load(run_dir).config.seed
    for r in m.within:
        assert r.random_null.high < r.mmcs <= 1.0
        assert r.mmcs_hungarian <= r.mmcs + 1e-6
        assert r.other_seed_mmcs is not None and r.other_seed_mmcs > r.random_null.high
        assert (run_dir.sae(r.model, r.hook, r.small, seed=seed + 1) / "cfg.json").exists()
        assert len(r.shared) == 20 and r.shared[0].mcs >= r.shared[-1].mcs
    assert {r.size for r in m.base_vs_policy} == {"1x", "2x"}
    assert "Shared features: MMCS" in (run_dir.report / "index.html").read_text()

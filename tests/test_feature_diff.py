import pytest

from rlhf.rundir import read_json


def test_feature_diffs_rank_and_score_policy_features(tiny_run):
    cfg, run_dir, _ = tiny_run
    f = read_json(run_dir.analysis / "feature_diff.json")
    assert len(f["hooks"]) == 2
    threshold = cfg.feature_diff.match_threshold
    for h in f["hooks"]:
        assert all(c["mcs"] < threshold for c in h["new"])
        assert all(c["mcs"] >= threshold for c in h["changed"])
        changes = [abs(c["freq_policy"] - c["freq_base_match"]) for c in h["changed"]]
        assert changes == sorted(changes, reverse=True)
        alignments = [c["logit_alignment"] for c in h["writes_utility"]]
        assert alignments == sorted(alignments, reverse=True)
        assert all(-1 <= c["utility_corr"] <= 1 for c in h["changed"])
        assert 0 < h["max_abs_utility_corr"] <= 1
    # The tiny model's features are too weak to carry valence; the demo's are shown in its report.
    assert "feature diffs" in (run_dir.report / "index.html").read_text()


def test_pearson_per_feature():
    import torch

    from analysis.feature_diff import _pearson

    x = torch.tensor([[1.0, 2.0, 5.0], [2.0, 4.0, 5.0], [3.0, 6.1, 5.0]])
    y = torch.tensor([1.0, 2.0, 3.0])
    r = _pearson(x, -y)
    assert r[0].item() == pytest.approx(-1.0) and r[1].item() < -0.99 and r[2].item() == 0.0

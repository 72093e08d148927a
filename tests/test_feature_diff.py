import pytest

from analysis.results import FeatureDiffResult


def test_feature_diffs_rank_and_score_policy_features(tiny_run):
    cfg, run_dir, _ = tiny_run
    f = FeatureDiffResult.load(run_dir)
    assert len(f.hooks) == 2 and f.match_threshold == cfg.feature_diff.match_threshold
    threshold = cfg.feature_diff.match_threshold
    for h in f.hooks:
        assert all(c.mcs < threshold for c in h.new)
        assert all(c.mcs >= threshold for c in h.changed)
        changes = [abs(c.freq_policy - c.freq_base_match) for c in h.changed]
        assert changes == sorted(changes, reverse=True)
        alignments = [c.logit_alignment for c in h.writes_utility]
        assert alignments == sorted(alignments, reverse=True)
        assert all(-1 <= c.utility_corr <= 1 for c in h.changed)
        assert 0 < h.max_abs_utility_corr <= 1
        # Only features that fire on the held-out texts are ranked or carded; the others are counted.
        assert all(c.freq_policy > 0 for ranked in h.rankings().values() for c in ranked)
        assert all(c.freq_policy > 0 for c in h.cards.values()) and 0 <= h.set_aside < h.n_features
        # Each card's data is complete: the report draws it without reading anything else.
        for i, card in h.cards.items():
            assert card.feature == i and len(card.histogram.edges) == cfg.feature_diff.histogram_bins + 1
            assert len(card.histogram.policy) == len(card.histogram.base_match) == cfg.feature_diff.histogram_bins
            assert all(len(e.tokens) == len(e.policy) == len(e.base) for e in card.examples)
    # The tiny model's features are too weak to carry valence; the demo's are shown in its report.
    assert "feature diffs" in (run_dir.report / "index.html").read_text()


def test_pearson_per_feature():
    import torch

    from analysis.feature_diff import pearson

    x = torch.tensor([[1.0, 2.0, 5.0], [2.0, 4.0, 5.0], [3.0, 6.1, 5.0]])
    y = torch.tensor([1.0, 2.0, 3.0])
    r = pearson(x, -y)
    assert r[0].item() == pytest.approx(-1.0) and r[1].item() < -0.99 and r[2].item() == 0.0


def test_feature_cards_render_offline_in_headless_chromium(tiny_run, tmp_path):
    import re

    from tests.browser import open_page

    _, run_dir, _ = tiny_run
    page = run_dir.report / "feature_diff.html"
    source = page.read_text()
    f = FeatureDiffResult.load(run_dir)
    n_views = sum(len(c.examples) for h in f.hooks for c in h.cards.values())
    assert n_views > 0
    assert source.count("CircuitsVis.render(") == n_views
    assert source.count("var CircuitsVis") == 1  # the bundle is inlined once, not once per view
    assert "unpkg.com" not in source and "<script src" not in source
    dom, console = open_page(page, screenshot=tmp_path / "feature_diff.png")
    assert console == []
    mounts = re.findall(r'<div id="(circuits-vis-[^"]+)"[^>]*>(.{0,200})', dom)
    assert len(mounts) == n_views
    # Each mount point holds a rendered view with the two models' value tracks.
    assert all("policy feature" in inner for _, inner in mounts)
    assert (tmp_path / "feature_diff.png").stat().st_size > 10_000


def test_a_view_keeps_only_its_render_call_and_escapes_tokens():
    import torch
    from circuitsvis.tokens import colored_tokens_multi

    from study.report.cards import bundle_script, view

    tokens = ["a", "</script><script>alert(1)</script>", "<!--"]
    markup = view(colored_tokens_multi(tokens, torch.zeros(3, 2), labels=["x", "y"]))
    assert len(markup) < 2_000 < len(bundle_script())
    assert markup.count("</script>") == 1 and "<!--" not in markup
    assert "\\u003c/script>\\u003cscript>alert(1)" in markup
    assert "/>" not in markup.split("<script")[0]  # the mount div is closed explicitly


def test_dictionaries_that_cannot_be_compared_are_named(tiny_run):
    from analysis.dictionaries import load_sae
    from analysis.feature_diff import _check_comparable
    from rlhf.errors import UserError

    _, run_dir, _ = tiny_run
    hook = FeatureDiffResult.load(run_dir).hooks[0].hook
    small = load_sae(run_dir.sae("policy", hook, "1x"))
    wide = load_sae(run_dir.sae("base", hook, "2x"))
    assert small.cfg.metadata.hook_name == hook  # SAEs record where they read
    with pytest.raises(UserError, match="cannot be compared"):
        _check_comparable(small, wide, hook)
    other = load_sae(run_dir.sae("base", hook, "1x"))
    other.cfg.metadata.hook_name = "blocks.9.hook_resid_post"
    with pytest.raises(UserError, match="different hooks"):
        _check_comparable(small, other, hook)


def test_a_feature_that_never_fires_is_set_aside(tiny_run, tmp_path):
    """Silence the policy feature writing most towards high-utility tokens (its ranking reads only its
    decoder) in a copy of the tiny study: it leaves every ranking and card, and the count grows by one."""
    import shutil

    from safetensors.torch import load_file, save_file

    from analysis.feature_diff import diff_hook, policy_vocabulary
    from rlhf.rundir import RunDir

    cfg, original, _ = tiny_run
    run_dir = RunDir(shutil.copytree(original.root, tmp_path / "run"))
    h = FeatureDiffResult.load(run_dir).hooks[0]
    top = h.writes_utility[0].feature
    path = run_dir.sae("policy", h.hook, cfg.feature_diff.size) / "sae_weights.safetensors"
    state = load_file(str(path))
    state["W_enc"][:, top] = 0.0
    state["b_enc"][top] = -1e4
    save_file(state, str(path))
    tokenizer, vocab, token_valence, unembed = policy_vocabulary(run_dir)
    after = diff_hook(run_dir, h.hook, cfg.feature_diff, token_valence, unembed, vocab, tokenizer)
    assert after.set_aside == h.set_aside + 1
    assert all(top not in [c.feature for c in ranked] for ranked in after.rankings().values()) and top not in after.cards
    assert [c.feature for c in after.writes_utility][: len(h.writes_utility) - 1] == [c.feature for c in h.writes_utility[1:]]
    page = (original.report / "feature_diff.html").read_text()
    assert "policy features that never fire on the held-out texts are set aside" in page

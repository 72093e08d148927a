"""The implicit-reward probes on the tiny study: contrastive data, the linear probe and
its command line, feature ablation, and the sequence-level probes."""

import os
import re
import shutil
import subprocess
import sys

import torch

from analysis.results import ActivationIndex
from probes.contrastive import lexicon_triples
from probes.results import ImplicitRewardResult, LinearRewardResult, ValenceProbeResult
from rlhf.lexicon import valence
from rlhf.results import DPOResult
from tests.conftest import ROOT


def probe_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "probes.fit_linear_reward", *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=600)


def test_lexicon_swaps_cut_each_text_at_the_swapped_word():
    texts = ["the plot was wonderful and long", "nothing here", "a horrible , dull film"]
    data = lexicon_triples(texts, 5, seed=0, positive=["great"], negative=["awful"], neutral=["square"])
    assert data.n_triples == 2
    assert sorted(data.texts) == sorted(["the plot was great", "the plot was awful", "the plot was square",
                                         "a great", "a awful", "a square"])
    assert [data.kinds[i] for i in range(3)] == ["positive", "negative", "neutral"]
    assert all(t.endswith(w) for t, w in zip(data.texts, data.words))


def test_the_probe_reads_the_utility_on_held_out_words(tiny_run, tmp_path):
    """The command line on the tiny study: the policy-SAE probe ranks words it never saw
    by their VADER valence, far above the untrained null."""
    _, run_dir, _ = tiny_run
    out = tmp_path / "probe.json"
    result = probe_cli("--run-dir", str(run_dir.root), "--triples", "600", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "held_out_words" in result.stdout and "untrained (null)" in result.stdout
    r = LinearRewardResult.read(out)
    assert (r.model, r.features, r.target) == ("policy", "sae", "utility")
    held = r.protocols.held_out_words
    probe, null = held.probe.all, held.untrained.all
    assert probe.kendall_tau > 0.4 and probe.sign_accuracy > 0.8
    assert abs(null.kendall_tau) < 0.25
    assert [(m.kind, m.label) for m in held.rows()] == [
        ("probe", "probe (sae)"), ("untrained", "untrained (null)"), ("raw_activations", "raw activations"),
        ("embedding_only", "embedding only")]
    assert (held.probe.features, held.raw_activations.features, held.embedding_only.features) == ("sae", "activations", "embedding")
    assert r.protocols.paper.probe.all.kendall_tau > 0.4
    held_words = set(held.probe.per_word.words)
    assert len(held_words) >= 60 and all(valence(w) != 0 for w in held_words)
    assert r.n_features == 2 * 64  # two chosen layers, 1x SAEs of d_model 64


def test_paper_target_is_the_signed_distance_from_neutral():
    from probes.contrastive import ContrastiveSet
    from probes.linear_probe import targets

    data = ContrastiveSet(["a good", "a bad", "a square"], ["good", "bad", "square"], ["positive", "negative", "neutral"])
    feats = torch.tensor([[3.0, 4.0], [0.0, 1.0], [0.0, 0.0]])
    assert targets(data, feats, "paper").tolist() == [5.0, -1.0, 0.0]
    assert targets(data, feats, "utility").tolist() == [valence("good"), valence("bad"), 0.0]


def test_probe_errors_name_the_problem(tiny_run, tmp_path):
    _, run_dir, _ = tiny_run
    result = probe_cli("--run-dir", str(run_dir.root), "--layers", "7")
    assert result.returncode == 2 and "layer(s) [7] are not in this study" in result.stderr
    result = probe_cli("--run-dir", str(run_dir.root), "--triples", "10")
    assert result.returncode == 2 and "--triples must be at least 20, got 10" in result.stderr
    bare = tmp_path / "bare"
    shutil.copytree(run_dir.root, bare, ignore=shutil.ignore_patterns("saes", "activations"))
    result = probe_cli("--run-dir", str(bare))
    assert result.returncode == 2 and "--until dictionaries" in result.stderr
    assert "Traceback" not in result.stderr
    result = probe_cli("--help")
    for option in ("--run-dir", "--model", "--features", "--layers", "--target", "--alpha", "--out", "--triples",
                   "--size", "--seed"):
        assert option in result.stdout
    result = probe_cli("--run-dir", str(run_dir.root), "--alpha", "-1")
    assert result.returncode == 2 and "--alpha must be > 0" in result.stderr


def test_probe_command_answers_a_mistake_before_loading_torch(tmp_path):
    """A missing run directory and a bad --target are one-line errors given before torch, transformer-lens
    and scikit-learn are imported (which takes seconds on a loaded machine)."""
    for args, message in (([str(tmp_path / "nope")], "run directory .*nope does not exist"),
                          ([str(tmp_path), "--target", "reward"], "argument --target: invalid choice: 'reward'")):
        code = ("import sys\nfrom probes.fit_linear_reward import main\n"
                "try:\n    rc = main(['--run-dir', *sys.argv[1:]])\nexcept SystemExit as e:\n    rc = e.code\n"
                "assert 'torch' not in sys.modules and 'sklearn' not in sys.modules\nsys.exit(rc)")
        result = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and re.search(message, result.stderr)


def test_splicing_keeps_the_error_term_so_only_switched_off_features_change(tiny_run):
    from analysis.dictionaries import load_sae
    from probes.ablation import splice_hooks
    from rlhf.hooked import to_hooked

    _, run_dir, _ = tiny_run
    model = to_hooked(run_dir.policy)
    hook = ActivationIndex.load(run_dir).hooks[-1]
    sae = load_sae(run_dir.sae("policy", hook, "1x"))
    tokens = model.tokenizer(["the movie"], return_tensors="pt")["input_ids"]  # short: some features stay silent
    with torch.no_grad():
        plain, cache = model.run_with_cache(tokens, names_filter=[hook])
        codes = sae.encode(cache[hook])
        silent = (codes.amax(dim=(0, 1)) == 0).nonzero()[:, 0].tolist()
        firing = (codes.amax(dim=(0, 1)) > 0).nonzero()[:, 0].tolist()
        assert silent and firing
        # Switching off features that do not fire leaves the model exactly as it was.
        same = model.run_with_hooks(tokens, fwd_hooks=splice_hooks({hook: sae}, {hook: silent}))
        assert torch.allclose(same, plain, atol=1e-4)
        edited = splice_hooks({hook: sae}, {hook: firing})[0][1](cache[hook].clone(), None)
        expected = cache[hook] - sae.decode(codes) + sae.decode(torch.zeros_like(codes))
        assert torch.allclose(edited, expected, atol=1e-5)
        changed = model.run_with_hooks(tokens, fwd_hooks=splice_hooks({hook: sae}, {hook: firing}))
        assert not torch.allclose(changed, plain, atol=1e-3)


def test_study_stage_ablation_and_sequence_probes(tiny_run):
    _, run_dir, _ = tiny_run
    r = ImplicitRewardResult.load(run_dir)
    assert [(name, (res.model, res.features)) for name, res in r.linear.items()] == [
        ("policy_sae", ("policy", "sae")), ("policy_activations", ("policy", "activations")),
        ("base_sae", ("base", "sae")), ("base_activations", ("base", "activations"))]
    assert r.linear.policy_sae == LinearRewardResult.load(run_dir, model="policy", features="sae")  # each probe saved beside it
    a = r.ablation
    assert a.k == 8 and len(a.random_sets) == 2
    assert a.none.reward_change == 0 and a.probe_top_k.kl_per_token > 0
    assert len(a.random_k.runs) == 2 * 2  # random sets x seeds
    # The sweep: the headline k and the config's other size, each probe against its own random sets.
    assert [row.k for row in a.sweep] == [8, 16]
    assert a.sweep[0].probe_top_k == a.probe_top_k
    assert all(len(row.random_k.runs) == 2 * 2 and row.probe_top_k.kl_per_token > 0 for row in a.sweep)
    s = r.sequence
    assert s.n_completions == 600
    for m in ("base", "policy"):
        last = s.models[m].last_token
        assert last.best_hook in last.per_hook and -1 <= last.kendall_tau <= 1
        assert last.best == last.per_hook[last.best_hook] and len(last.prediction) == s.n_test
    assert s.models["policy"].last_token.kendall_tau > 0.3
    assert s.dpo is not None and -1 <= s.dpo.implicit_vs_true.kendall_tau <= 1
    assert s.dpo.beta == DPOResult.load(run_dir).beta  # read from DPO's result, not its config
    assert 0.5 <= s.models["policy"].logistic.auroc <= 1
    for figure in ("scatter", "ablation"):
        assert ImplicitRewardResult.figure(run_dir, figure).stat().st_size > 5000
    assert "implicit reward" in (run_dir.report / "index.html").read_text().lower()


def test_report_sections_read_the_probe_results(tiny_run):
    from study.report.checks import groups
    from study.report.sections.implicit_reward import SECTION as implicit_reward
    from study.report.sections.valence import SECTION as valence_section

    _, run_dir, _ = tiny_run
    rendered = implicit_reward.render(run_dir)
    summary, body = rendered.summary, rendered.body
    r = ImplicitRewardResult.load(run_dir)
    assert summary == {
        "probe_tau_policy_sae": r.linear.policy_sae.protocols.held_out_words.probe.all.kendall_tau,
        "probe_tau_base_sae": r.linear.base_sae.protocols.held_out_words.probe.all.kendall_tau,
        "probe_tau_policy_activations": r.linear.policy_activations.protocols.held_out_words.probe.all.kendall_tau,
        "probe_tau_embedding_only": r.linear.policy_sae.protocols.held_out_words.embedding_only.all.kendall_tau,
        "sequence_probe_tau_policy": r.sequence.models["policy"].last_token.kendall_tau,
        "ablation_reward_change_probe": r.ablation.probe_top_k.reward_change,
        "ablation_reward_change_random": r.ablation.random_k.reward_change}
    assert set(summary) == set(implicit_reward.labels)
    assert "policy: sae probe" in body and "base: activations probe" in body and "data:image/png;base64" in body
    rendered = valence_section.render(run_dir)
    summary, body, verdicts = rendered.summary, rendered.body, groups(rendered.checks)
    v = ValenceProbeResult.load(run_dir)
    assert v.model == "base" and set(summary) | set(verdicts) == set(valence_section.labels)
    # The report's checks reach the probe's own verdict.
    assert summary["valence_base_word_tau"] == v.summary.word_tau and verdicts["valence_base_passes"] == v.summary.passes
    assert "base model" in body and v.summary.best_word_hook in body

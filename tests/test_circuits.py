"""Sparse feature circuits: the circuits of every node and of none give back the two models, a planted
two-layer mechanism is found in order, and the stage on the tiny study."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig

from analysis.circuits import Site
from analysis.circuits_stage import circuit_sites, circuits_stage, graph, one_seed
from analysis.config import CircuitsConfig
from analysis.results import CircuitsResult
from analysis.reward_gain import sample_completions, token_utility
from rlhf.errors import UserError
from rlhf.hooked import to_hooked
from rlhf.policy import prompts_from_texts
from rlhf.rundir import RunDir


def test_the_stage_gives_back_both_models_and_writes_its_section(tiny_run):
    cfg, run_dir, _ = tiny_run
    result = CircuitsResult.load(run_dir)
    assert [s.seed for s in result.seeds] == list(cfg.circuits.dictionary_seeds)
    for s in result.seeds:
        assert s.all_nodes == pytest.approx(1.0, abs=1e-5), "every node computed: the policy itself"
        assert s.empty == pytest.approx(0.0, abs=1e-5), "every node at the base's values: the base itself"
        assert len(s.faithfulness) == len(s.completeness) == len(cfg.circuits.budgets)
        assert s.estimator in ("attribution", "integrated_gradients")
        assert len(s.ranking) == max(cfg.circuits.budgets) and len(set(s.ranking)) == len(s.ranking)
        # The largest budget holds most of the nodes: it carries most of the gain both ways.
        assert s.faithfulness[-1] > 0.5 and s.completeness[-1] > 0.5
    assert len(result.graph_nodes) == cfg.circuits.graph_budget
    drawn = {n.name for n in result.graph_nodes}
    assert all(e.source in drawn and e.target in drawn for e in result.graph_edges)
    assert CircuitsResult.figure(run_dir, "graph").exists() and CircuitsResult.figure(run_dir, "curves").exists()
    page = (run_dir.report / "index.html").read_text()
    assert "Feature circuits" in page and "faithfulness" in page
    summary = json.loads((run_dir.report / "summary.json").read_text())
    assert summary["circuit_exact_error"] <= 1e-5


def _sae(directions: torch.Tensor) -> StandardSAE:
    """A ReLU dictionary whose latents read exactly their own decoder direction (the encoder is the decoder's
    pseudo-inverse): a latent's code is its coordinate."""
    sae = StandardSAE(StandardSAEConfig(d_in=directions.shape[1], d_sae=directions.shape[0]))
    with torch.no_grad():
        sae.W_dec.copy_(directions)
        sae.W_enc.copy_(torch.linalg.pinv(directions))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def test_a_planted_two_layer_mechanism_is_the_top_two_nodes_in_order(tiny_run):
    """The fine-tune writes a direction a at layer 0 (and a little of the utility direction w with it); one
    layer-1 MLP neuron reads a and writes w. Latent 0 at layer 0 (a) feeds latent 1 at layer 1 (w): they are
    the circuit's top two nodes, the upstream one first (its effect is the downstream one's plus its own
    direct part), and the strongest edge joins them."""
    _, run_dir, _ = tiny_run
    base, planted = to_hooked(run_dir.base), to_hooked(run_dir.base)
    d = base.cfg.d_model
    u = token_utility(base.tokenizer, base.cfg.d_vocab)
    w = base.W_U @ (u - u.mean())
    w = w / w.norm()
    gen = torch.Generator().manual_seed(0)
    n = torch.randn(d, generator=gen)
    n = n - (n @ w) * w
    n = n / n.norm()
    a = (n + 0.25 * w) / (n + 0.25 * w).norm()
    with torch.no_grad():
        planted.blocks[0].mlp.out.bias += 6.0 * a
        mlp_in, mlp_out = getattr(planted.blocks[1].mlp, "in"), planted.blocks[1].mlp.out
        mlp_in.weight[0] = 3.0 * n
        mlp_in.bias[0] = -2.0
        mlp_out.weight[:, 0] = 3.0 * w
    prompts = prompts_from_texts(run_dir.texts("test"), 24, 5)
    batch = sample_completions(planted, prompts, u.expand(len(prompts), -1), max_new_tokens=19, seed=0)

    def dictionary(first: list[torch.Tensor]) -> StandardSAE:
        rest, _ = torch.linalg.qr(torch.cat([torch.stack(first).T, torch.randn(d, 6, generator=gen)], 1))
        return _sae(torch.cat([torch.stack(first), rest[:, len(first):].T]))

    sites = [Site("blocks.0.hook_resid_post", 0, dictionary([a])), Site("blocks.1.hook_resid_post", 1, dictionary([a, w]))]
    cfg = CircuitsConfig(budgets=(2, 5), dictionary_seeds=(0,), ig_steps=4, checked_nodes=5, graph_budget=5)
    record, found = one_seed(cfg, (base, planted), batch, sites, 0)
    assert record.gain > 0.3
    assert record.all_nodes == pytest.approx(1.0, abs=1e-5) and record.empty == pytest.approx(0.0, abs=1e-5)
    assert record.ranking[:2] == ("L0/0", "L1/1")
    assert min(record.faithfulness[0], record.completeness[0]) > 0.8, "the two nodes carry the mechanism both ways"
    _, links = graph(cfg, planted, batch, sites, found)
    strongest = max(links, key=lambda e: abs(e.weight))
    assert (strongest.source, strongest.target) == ("L0/0", "L1/1")


@pytest.mark.parametrize("change, message", [
    ({"budgets": (10, 100_000)}, "lower the largest budget"),
    ({"size": "9x"}, "circuits.size = '9x'"),
])
def test_bad_input_is_a_one_line_error(tiny_run, change, message):
    cfg, run_dir, _ = tiny_run
    with pytest.raises(UserError, match=message):
        circuits_stage(dataclasses.replace(cfg.circuits, dictionary_seeds=(0,), **change), run_dir)


def test_a_run_without_the_residual_stream_names_the_kind_to_cache(tiny_run, tmp_path, capsys):
    """The stage reads the residual stream's dictionaries at every layer: a run that cached only hook_mlp_out
    goes on without circuits and is told which key to set; asking for its sites is an error that says so."""
    _, run_dir, _ = tiny_run
    index = json.loads(run_dir.activations_index.read_text())
    copy = RunDir(tmp_path / "run")
    for model in (run_dir.base, run_dir.policy):
        shutil.copytree(model, copy.root / model.relative_to(run_dir.root))
    copy.activations_index.parent.mkdir(parents=True)
    copy.activations_index.write_text(json.dumps({**index, "extra_hooks": []}))
    assert circuits_stage(CircuitsConfig(dictionary_seeds=(0,)), copy) is None
    assert "[circuits] skipped: circuits need the residual stream cached at every layer" in capsys.readouterr().out
    with pytest.raises(UserError, match="add 'blocks.{layer}.hook_resid_post' to activations.extra_hooks"):
        circuit_sites(CircuitsConfig(), copy, 2, 0)


def test_a_run_without_a_policy_is_refused(tmp_path):
    with pytest.raises(UserError, match="need a policy"):
        circuits_stage(CircuitsConfig(), RunDir(tmp_path))

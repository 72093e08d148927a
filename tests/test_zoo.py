"""The zoo (``python -m study zoo``): organisms on one shared base, each a run directory of its own, and the
zoo's page. The tiny study's run stands in for the trained base."""

import shutil
from dataclasses import replace

import pytest
import torch

from analysis.results import ModelDiffingResult, RewardAttributionResult
from rlhf.organisms.edit import PlantedEdit
from rlhf.organisms.objective import Organism
from rlhf.results import PolicyResult
from rlhf.rundir import RunDir
from rlhf.zoo import ORGANISMS, Answer, OrganismSpec
from study.__main__ import main
from study.zoo import run_zoo


def test_the_zoo_runs_an_organism_on_the_shared_base_and_writes_its_page(tiny_run, tmp_path):
    cfg, tiny, _ = tiny_run
    zoo = replace(cfg, name="zoo", runs_dir=str(tmp_path))
    shutil.copytree(tiny.root, tmp_path / "zoo" / "base", ignore=shutil.ignore_patterns("activations", "saes", "report"))
    lines: list[str] = []
    page = run_zoo(zoo, ("edit",), log=lines.append)
    assert "[pretrain] done already, skipped" in lines, "the base is trained once: the zoo's base run finds it finished"
    run = RunDir(tmp_path / "zoo" / "edit")
    policy = PolicyResult.load(run)
    assert policy.kept_reason == "planted" and policy.reward == "organism:edit"
    assert PlantedEdit.load(run.policy).hook.startswith("blocks.")
    attribution = RewardAttributionResult.load(run)
    assert attribution.organism == "edit" and all(g.gain > 0 for g in attribution.gain)
    edit = PlantedEdit.load(run.policy)
    edited = next(s for s in attribution.patching if s.site == edit.hook)
    assert all(r == pytest.approx(1.0, abs=1e-5) for r in edited.recovered)
    # Known answer through model diffing: the lens's direction at the edited hook is the planted one.
    diffing = ModelDiffingResult.load(run)
    lens = diffing.summary["activation_difference_lens"]["planted_cosine"]
    assert lens.mean >= 0.99, lens
    # Amplification names tokens against the organism's answer, as every method does, not the sentiment's vocabulary.
    (amplified, *_) = diffing.per_run["logit_amplification"].runs
    assert amplified.high_utility_vocabulary == diffing.high_utility_vocabulary
    text = page.read_text()
    assert page == RunDir(tmp_path / "zoo").report / "index.html"
    assert "rank-one edit" in text and "../edit/report/index.html" in text and "Flagged" not in text
    assert "Leaderboard: share of G its top 10 directions recover" in text and "(tier 1)" in text
    assert "best top 10 both ways" in text and "Leaderboard: share of G its top 30 directions recover" in text
    assert (run.report / "index.html").exists()


class Unrewarded(Organism):
    """Nothing a completion says earns anything: a reward no policy can raise."""

    def utility(self, tokenizer, d_vocab: int, prompt: str = "") -> torch.Tensor:
        return torch.zeros(d_vocab)

    def reward(self, prompts, completions, **_: object) -> list[float]:
        return [0.0] * len(completions)

    def answer(self, tokenizer) -> Answer:
        return Answer((), "nothing")


def unrewarded(options: object) -> Unrewarded:
    return Unrewarded()


def test_an_organism_whose_reward_the_base_cannot_raise_is_said_so_after_training_and_flagged(tiny_run, tmp_path,
                                                                                              monkeypatch):
    cfg, tiny, _ = tiny_run
    monkeypatch.setitem(ORGANISMS, "unrewarded", OrganismSpec("tests.test_zoo:unrewarded", "earns nothing"))
    zoo = replace(cfg, name="zoo", runs_dir=str(tmp_path), policy=replace(cfg.policy, max_steps=4))
    shutil.copytree(tiny.root, tmp_path / "zoo" / "base", ignore=shutil.ignore_patterns("activations", "saes", "report"))
    lines: list[str] = []
    page = run_zoo(zoo, ("unrewarded",), log=lines.append)
    run = RunDir(tmp_path / "zoo" / "unrewarded")
    assert PolicyResult.load(run).reward_gain <= 0
    said = [line for line in lines if "did not raise its reward" in line]
    assert len(said) == 1 and said[0].startswith("[zoo] organism unrewarded:"), lines
    assert not RewardAttributionResult.exists(run) and not ModelDiffingResult.exists(run)
    text = page.read_text()
    assert "Flagged: unrewarded" in text and "its reward did not rise" in text


def test_an_unknown_organism_is_one_line_before_anything_runs(tmp_path, capsys):
    assert main(["zoo", "--organisms", "edit", "nope", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown organism 'nope'; registered: sentiment, topic, trigger, length, edit" in err
    assert not (tmp_path / "zoo").exists()


def test_the_leaderboard_ranks_only_where_spreads_separate_and_shows_a_split_winner():
    """Known answer on made-up scores: A leads the first organism and trails the second, B the reverse; C
    overlaps A on the first, so they share its top tier. Each of A and B leads one organism of two."""
    from markupsafe import Markup

    from analysis.results import SeedStat
    from study.zoo_report import OrganismRow, board

    def row(name: str, scores: dict[str, tuple[float, float]]) -> OrganismRow:
        return OrganismRow(name=name, label=name, answer="", answer_tokens=(), checks=(), raised=True, gain="",
                           best_site="", best_splices=(), report="", patching=Markup(""), named=(),
                           diffing={m: {"recovered_top10": SeedStat(mean, std, 3)} for m, (mean, std) in scores.items()},
                           hooks={m: "blocks.1.hook_mlp_out" for m in scores})

    rows = [row("one", {"a": (0.8, 0.05), "b": (0.2, 0.05), "c": (0.7, 0.06)}),
            row("two", {"a": (0.1, 0.02), "b": (0.6, 0.02), "c": (0.3, 0.02)})]
    b = board(rows, "recovered_top10", "share")
    leads = {method: n for method, _, n in b.rows}
    cells = {method: c for method, c, _ in b.rows}
    assert leads == {"a": 1, "b": 1, "c": 1}
    assert cells["a"] == ("0.800 ± 0.050 at blocks.1.hook_mlp_out (tier 1)", "0.100 ± 0.020 at blocks.1.hook_mlp_out (tier 3)")
    assert cells["c"][0].endswith("(tier 1)") and cells["c"][1].endswith("(tier 2)")


def test_each_method_is_scored_at_its_best_hook_by_one_criterion():
    """Known answer on made-up rows: "lens" carries most of G both ways at layer 1 (though layer 0 recovers more
    one way and names the answer better), so all its scores are layer 1's; "kl" names tokens only, so its hook is
    the one where they are most precise; each score is the mean and spread over the dictionary seeds there."""
    from analysis.diffing.scoring import at_best_hook
    from analysis.results import AblationEffect, LatentStats, LayerDiffing, MethodScore, SpliceEffect

    def row(seed: int, recovered: float, removed: float, precision: float, latents: bool = True) -> MethodScore:
        return MethodScore(seed=seed, latents=(0,) if latents else (), n=int(latents), share_tracking_reward=None,
                           mean_abs_corr=None, precision=precision, recall=0.0,
                           splice={10: SpliceEffect(recovered, removed, 10)} if latents else {})

    def layer(hook: str, lens: list[MethodScore], kl: list[MethodScore]) -> LayerDiffing:
        return LayerDiffing(hook=hook, methods={"lens": tuple(lens), "kl": tuple(kl)}, random_directions=AblationEffect(0, 0),
                            crosscoder={}, latents=LatentStats((), (), (), (), ()), cards=())

    layers = [layer("blocks.0.hook_mlp_out", [row(0, 0.9, 0.1, 0.9), row(1, 0.9, 0.1, 0.9)], [row(0, 0, 0, 0.2, False)]),
              layer("blocks.1.hook_mlp_out", [row(0, 0.6, 0.5, 0.1), row(1, 0.4, 0.7, 0.3)], [row(0, 0, 0, 0.6, False)])]
    best = at_best_hook(layers, ["lens", "kl"])
    hook, stats = best["lens"]
    assert hook == "blocks.1.hook_mlp_out"
    assert stats["recovered_top10"].mean == pytest.approx(0.5) and stats["recovered_top10"].std == pytest.approx(0.1)
    assert stats["precision"].mean == pytest.approx(0.2) and stats["precision"].seeds == 2
    assert best["kl"][0] == "blocks.1.hook_mlp_out" and best["kl"][1]["precision"].mean == pytest.approx(0.6)


def test_the_goal_s_verdict_is_computed_from_the_best_scores():
    """Known answers: the goal needs one method carrying half of G both ways and one naming the answer at 0.8."""
    from analysis.results import SeedStat
    from study.zoo_report import goal_verdict

    def stats(recovered: float, removed: float, precision: float) -> dict[str, SeedStat]:
        return {"recovered_top10": SeedStat(recovered, 0.0, 3), "removed_top10": SeedStat(removed, 0.0, 3),
                "precision": SeedStat(precision, 0.0, 3)}

    assert goal_verdict({"a": stats(0.9, 0.6, 0.1), "b": stats(0.1, 0.1, 0.85)}).startswith(
        "met: best top 10 both ways 0.60 (goal 0.5), best precision 0.85 (goal 0.8)")
    assert goal_verdict({"a": stats(0.9, 0.4, 0.9)}).startswith("not met: best top 10 both ways 0.40")
    assert goal_verdict({}) == ""

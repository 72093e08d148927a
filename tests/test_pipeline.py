"""The tiny study end to end: artifacts, measured quality, skipping and re-running."""

import json
import re
import shutil
import warnings
from dataclasses import replace

import pytest

from probes.results import ValenceProbeResult
from rlhf import hooked
from rlhf.errors import UserError
from rlhf.results import ConversionResult
from rlhf.rundir import RunDir, read_json
from study.pipeline import run_study, status
from study.stages import stage_names
from tests.conftest import TINY


def test_every_stage_ran_and_wrote_its_artifacts(tiny_run):
    cfg, run_dir, lines = tiny_run
    for stage in stage_names():
        assert f"[{stage}] running" in lines
        manifest = read_json(run_dir.manifests / f"{stage}.json")
        assert manifest["versions"]["transformer-lens"].startswith("3.9")
        assert manifest["seconds"] > 0
    assert (run_dir.base / "model.safetensors").exists()
    assert read_json(run_dir.config_file)["name"] == "tiny"
    assert not list(run_dir.root.rglob(".*.partial")), "no partial directory is left behind"


def test_training_curves_go_to_tensorboard_event_files(tiny_run):
    """[logging] report_to = ["tensorboard"] (configs/tiny.toml): each trainer writes its curves through
    its own report_to into logs/tensorboard/<stage>; read back with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg, run_dir, _ = tiny_run
    assert cfg.logging.report_to == ("tensorboard",)
    for stage, tag in (("pretrain", "train/loss"), ("policy", "train/reward")):
        events = EventAccumulator(str(run_dir.root / "logs" / "tensorboard" / stage)).Reload()
        assert tag in events.Tags()["scalars"], events.Tags()["scalars"]
        values = [e.value for e in events.Scalars(tag)]
        assert len(values) >= 5
        if stage == "pretrain":
            assert values[-1] < values[0]  # the curve is the training's own: the loss falls
    assert not (run_dir.root / "logs" / "tensorboard" / "divergence").exists()  # stages that train nothing write none


def test_base_model_reaches_the_entropy_floor(tiny_run):
    _, run_dir, _ = tiny_run
    p = read_json(run_dir.training / "pretrain.json")
    assert p["entropy_floor"] < p["test_loss"] < 1.10 * p["entropy_floor"]
    assert p["val_curve"][-1][1] < p["val_curve"][0][1]
    assert (run_dir.training / "pretrain.png").stat().st_size > 5000


def test_conversion_of_every_model_of_the_study(tiny_run):
    _, run_dir, _ = tiny_run
    conv = read_json(ConversionResult.path(run_dir))
    # Every causal LM; the reward models of hidden_context are sequence classifiers and are left out.
    assert set(conv["models"]) == {"base", "policy", "policy_beta0", "dpo", "sft"}
    assert (run_dir.model("reward_mean_variance") / "config.json").exists()
    assert all(m["max_abs_logit_diff"] < 1e-4 for m in conv["models"].values())


def test_base_model_knows_sentiment_and_random_init_does_not(tiny_run):
    _, run_dir, _ = tiny_run
    v = read_json(ValenceProbeResult.path(run_dir))
    s = v["summary"]
    # The tiny model is weaker than the demo's (which the report holds to 0.8 and 0.7),
    # but it clearly carries valence beyond its embedding and far above a random network.
    assert s["word_tau"] > 0.6 and s["word_tau"] > s["embedding_tau"]
    assert s["last_token_tau"] > 0.35
    assert s["random_init_word_tau"] < 0.25
    assert max(m["kendall_tau"] for m in v["random_init"]["last_token"].values()) < 0.25
    assert v["trained"]["n_held_out_words"] == 90  # 30% of 300 words


def test_report_is_self_contained(tiny_run):
    _, run_dir, _ = tiny_run
    page = (run_dir.report / "index.html").read_text()
    assert not re.search(r"(src|href)=['\"]https?://", page), "the page must not load anything from the network"
    assert page.count("data:image/png;base64,") >= 2
    for title in ("Corpus", "Base model pretraining", "Conversion to TransformerBridge", "know sentiment"):
        assert title in page
    summary = json.loads((run_dir.report / "summary.json").read_text())
    assert summary["loss_within_10pct"] is True
    assert summary["study"] == "tiny"


def test_rerun_skips_finished_stages(tiny_run, tmp_path):
    cfg, run_dir, _ = tiny_run
    copy = tmp_path / "tiny"
    shutil.copytree(run_dir.root, copy)
    cfg = replace(cfg, runs_dir=str(tmp_path))
    lines = []
    run_study(cfg, log=lines.append)
    assert all(f"[{s}] done already, skipped" in lines for s in stage_names())
    # A changed probe setting re-runs the probe only; a changed corpus re-runs everything after it.
    lines.clear()
    run_study(replace(cfg, valence_probe=replace(cfg.valence_probe, examples_per_word=2)), log=lines.append)
    ran = [s for s in stage_names() if f"[{s}] running" in lines]
    assert ran == ["valence_probe"]
    assert read_json(RunDir(copy).probes / "valence_base.json")["trained"]["n_examples"] == 300 * 2
    rows = status(RunDir(copy))
    assert [name for name, _, _ in rows] == list(stage_names())
    assert all(m is not None and m.finished and not stale for _, m, stale in rows)


def test_report_opens_in_headless_chromium_without_console_errors(tiny_run, tmp_path):
    from tests.browser import open_page

    _, run_dir, _ = tiny_run
    dom, console = open_page(run_dir.report / "index.html", screenshot=tmp_path / "report.png")
    assert console == []
    assert "<h2 id=\"summary\">Summary</h2>" in dom
    # The circuitsvis feature cards rendered inside the report too.
    assert len(re.findall(r'<div id="circuits-vis-[^"]+"[^>]*><div', dom)) > 0
    assert (tmp_path / "report.png").stat().st_size > 50_000


def test_a_stage_started_over_clears_its_scratch_but_a_killed_one_resumes(tmp_path):
    from study.pipeline import _prepare_scratch
    from study.stages import STAGES

    run_dir = RunDir(tmp_path / "study")
    stage = next(s for s in STAGES if s.name == "activations")
    shard = run_dir.activations("base", "blocks.0.hook_mlp_out", "train") / "shard_00000.safetensors"

    def scratch_after(marker: str | None, fingerprint: str, forced: bool = False) -> bool:
        shard.parent.mkdir(parents=True, exist_ok=True)
        shard.write_text("old work")
        run_dir.manifests.mkdir(parents=True, exist_ok=True)
        run_dir.started_marker(stage.name).unlink(missing_ok=True)
        if marker is not None:
            run_dir.started_marker(stage.name).write_text(marker)
        _prepare_scratch(run_dir, stage, fingerprint, forced=forced, log=lambda _: None)
        assert run_dir.started_marker(stage.name).read_text() == fingerprint
        return shard.exists()

    assert scratch_after("abc", "abc") is True  # killed with the same config: resume from its shards
    assert scratch_after("abc", "def") is False  # another config: the old shards are not reused
    assert scratch_after("abc", "abc", forced=True) is False  # --force starts over
    assert scratch_after(None, "abc") is False  # no record of how the work was started


def test_sft_baseline_fine_tunes_on_the_best_base_completions(tiny_run):
    cfg, run_dir, _ = tiny_run
    sft = read_json(run_dir.training / "sft.json")
    assert sft["rows"] == round(cfg.sft.top_fraction * cfg.sft.n_samples)
    assert sft["mean_reward_of_rows"] >= sft["reward_threshold"] > sft["base"]["mean_reward"]
    assert sft["sft"]["mean_reward"] > sft["base"]["mean_reward"] + 0.1  # supervised learning on good completions helps
    assert 0 < sft["sft"]["mean_kl_per_token"] and (run_dir.model("sft") / "config.json").exists()
    assert "Supervised baseline" in (run_dir.report / "index.html").read_text()


def test_a_missing_or_empty_corpus_split_is_named(tmp_path):
    import pytest

    from rlhf.errors import UserError

    run_dir = RunDir(tmp_path)
    with pytest.raises(UserError, match="the test split .* is missing or empty; run the corpus stage"):
        run_dir.texts("test")
    run_dir.corpus.mkdir()
    (run_dir.corpus / "val.txt").write_text("", encoding="utf-8")
    with pytest.raises(UserError, match="the val split"):
        run_dir.texts("val")
    (run_dir.corpus / "train.txt").write_text("a b .\nc d .\n", encoding="utf-8")
    assert run_dir.texts("train") == ["a b .", "c d ."]


def test_console_shows_stage_lines_and_headline_while_library_chatter_goes_to_the_stage_log(tiny_run, capfd, monkeypatch):
    cfg, run_dir, _ = tiny_run
    # The conversion has no chatter of its own since the bridge replaced HookedTransformer: a library warning is planted.
    convert = hooked.to_hooked

    def chatty(*args: object, **kwargs: object) -> object:
        warnings.warn("a library's chatter", DeprecationWarning, stacklevel=2)
        return convert(*args, **kwargs)

    monkeypatch.setattr(hooked, "to_hooked", chatty)
    lines: list[str] = []
    run_study(cfg, force=("conversion",), log=lines.append)
    console = capfd.readouterr()
    assert "[conversion] running" in lines and any(line.startswith("[conversion] finished in") for line in lines)
    assert lines[lines.index("headline figures (all of them: report/summary.json):") + 1].split()[0] == "reward_gain"
    # The warning lands in the log, not on the console.
    assert "DeprecationWarning" not in console.err + console.out
    assert "a library's chatter" in run_dir.log("conversion").read_text()
    size = run_dir.log("conversion").stat().st_size
    run_study(cfg, force=("conversion",), log=lines.append, verbose=True)
    assert run_dir.log("conversion").stat().st_size == size, "--verbose leaves everything on the console"


def test_off_a_terminal_only_the_outermost_progress_bar_shows_and_none_adds_lines(tmp_path, capfd):
    """A nested bar reaches its line with newlines: in a log file every refresh would be a line."""
    from tqdm.auto import tqdm

    from study.console import stage_output

    with stage_output(tmp_path / "stage.log", verbose=False):
        for _ in tqdm(range(3), desc="outer", mininterval=0):
            for _ in tqdm(range(50), desc="inner", mininterval=0):
                pass
    err = capfd.readouterr().err
    assert "outer" in err and "inner" not in err
    assert "\n" not in err and "\x1b[A" not in err


def test_a_policy_that_breaks_a_bar_is_flagged_on_the_first_screen_and_in_the_last_lines(tiny_run, tmp_path):
    import html

    from rlhf.results import PolicyResult
    from study.console import closing_lines
    from study.report import build_report

    _, run_dir, _ = tiny_run
    copy = RunDir(tmp_path / "tiny")
    shutil.copytree(run_dir.root, copy.root)
    p = PolicyResult.load(copy)
    replace(p, reward_gain=2.5, policy=replace(p.policy, mean_kl_per_token=1.5,
                                               repeated_bigrams=p.base.repeated_bigrams)).save(copy)
    build_report(copy)
    summary = read_json(copy.report / "summary.json")
    assert summary["policy_passes"] is False
    policy = [c for c in summary["checks"] if c["group"] == "policy_passes"]
    assert [(c["label"], c["value"], c["bar"]) for c in policy if not c["passes"]] == [
        ("policy: KL to its start model (nats/token)", 1.5, 1.0)]  # the tiny study sets no budget: the 1-nat bar
    assert len(policy) == 3 and all(c["section"] == "policy" for c in policy)
    line = "FAIL  policy: KL to its start model (nats/token): 1.5, bar <= 1 (off by 0.5)"
    first_screen = html.unescape((copy.report / "index.html").read_text().split("<h2 id='corpus'>")[0])
    assert line in first_screen and "checks fail." in first_screen
    lines = closing_lines(summary)
    verdicts = [s.split()[0] for s in lines[lines.index(next(s for s in lines if s.startswith("checks: "))) + 1:]
                if s.startswith("  PASS") or s.startswith("  FAIL")]
    assert f"  {line}" in lines and verdicts == sorted(verdicts, reverse=True)  # every PASS first, the FAILs last


def test_status_and_report_name_what_a_policy_change_left_stale(tiny_run, tmp_path):
    """--force policy --until policy after a [policy] change: what was built on the old policy is stale."""
    from study.console import closing_lines

    cfg, run_dir, _ = tiny_run
    copy = RunDir(tmp_path / "tiny")
    shutil.copytree(run_dir.root, copy.root)
    assert not any(why for _, _, why in status(copy))
    changed = replace(cfg, runs_dir=str(tmp_path), policy=replace(cfg.policy, max_steps=2, n_eval_prompts=16))
    run_study(changed, force=("policy",), until="policy", log=[].append)
    why = {name: reason for name, _, reason in status(copy) if reason}
    assert set(why) == {"policy_beta0", "divergence", "activations", "dictionaries", "sae_quality", "mmcs",
                        "feature_diff", "model_diffing", "autointerp", "conversion", "implicit_reward",
                        "reward_attribution", "circuits"}
    assert why["divergence"] == "policy was re-run after it" and why["activations"] == "divergence is stale"
    page = (copy.report / "index.html").read_text()

    def section(anchor: str) -> str:
        return page.split(f"<h2 id='{anchor}'>")[1].split("<h2 id=")[0]

    for anchor in ("divergence", "dictionaries", "mmcs", "model_diffing", "implicit_reward", "reward_attribution",
                   "conversion"):
        assert "<b>Stale:</b>" in section(anchor), anchor
    # The policy's own section shows the beta = 0 run too, which repeated the old policy's config.
    assert "policy_beta0: policy was re-run after it" in section("policy")
    for anchor in ("corpus", "pretrain", "dpo", "valence"):
        assert "Stale:" not in section(anchor), anchor
    summary = read_json(copy.report / "summary.json")
    assert summary["stale_stages"] == why
    last = closing_lines(summary)[-1]
    assert last.startswith("STALE: ") and all(name in last for name in why)


def test_a_new_stage_is_one_module_and_one_registry_line(tiny_run, tmp_path):
    """tests/stage_example.py registered with one line, nothing else changed: its [word_count] section is
    read and checked, the finished study runs it alone (every other stage is skipped), status lists it,
    the report shows its section, and the run's config.json keeps its section."""
    from study.config import load_config
    from study.stages import STAGES, register
    from tests.stage_example import STAGE, WordCountResult

    cfg, original, _ = tiny_run
    shutil.copytree(original.root, tmp_path / original.root.name)
    saved = list(STAGES)
    register(STAGE)
    try:
        config = tmp_path / "with_stage.toml"
        config.write_text(TINY.read_text(encoding="utf-8") + "\n[word_count]\ntop = 3\n")
        with pytest.raises(UserError, match="word_count.top must be > 0"):
            load_config(config, {"word_count": {"top": 0}})
        lines: list[str] = []
        run_dir = run_study(load_config(config, {"runs_dir": str(tmp_path)}), log=lines.append)
        ran = [s for s in stage_names() if f"[{s}] running" in lines]
        assert ran == ["word_count"]
        result = WordCountResult.load(run_dir)
        assert len(result.words) == 3 and list(result.counts) == sorted(result.counts, reverse=True)
        assert ("word_count", True) in [(name, manifest is not None) for name, manifest, _ in status(run_dir)]
        page = (run_dir.report / "index.html").read_text()
        assert "Word count (example stage)" in page and result.words[0] in page
        assert load_config(run_dir.config_file).section("word_count").top == 3
    finally:
        STAGES[:] = saved

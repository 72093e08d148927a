import json
import re
import subprocess
import sys

import pytest

from rlhf.errors import UserError
from study.config import config_from_dict, load_config
from tests.conftest import ROOT


def test_shipped_configs_load():
    for path in (ROOT / "configs").glob("*.toml"):
        cfg = load_config(path)
        assert cfg.name and cfg.pretrain.d_model % cfg.pretrain.n_heads == 0


def test_defaults_and_int_to_float():
    cfg = config_from_dict({"name": "x", "pretrain": {"learning_rate": 1}})
    assert cfg.pretrain.learning_rate == 1.0 and isinstance(cfg.pretrain.learning_rate, float)
    assert cfg.corpus.organism.n_positive == 600 and cfg.corpus.source == "organism"


@pytest.mark.parametrize("data, message", [
    ({"nmae": "x"}, "unknown config key 'nmae' in the top level; valid keys: activations, autointerp, circuits, conversion, corpus"),
    ({"pretrain": {"lr": 1e-3}}, r"unknown config key 'lr' in \[pretrain\]; valid keys: .*learning_rate"),
    ({"pretrain": {"n_layers": "four"}}, "pretrain.n_layers must be int, got 'four'"),
    ({"pretrain": {"n_layers": True}}, "pretrain.n_layers must be int"),
    ({"corpus": 3}, "corpus must be a table"),
])
def test_bad_configs_name_the_problem(data, message):
    with pytest.raises(UserError, match=message):
        config_from_dict(data)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    with pytest.raises(UserError, match="not valid TOML"):
        load_config(bad)


# One invalid value per kind of check; each must fail when the config loads, name the key and say what is allowed.
INVALID = [
    pytest.param({"corpus": {"source": "organisms"}}, "corpus.source must be one of 'organism', 'dataset'; got 'organisms'",
                 id="literal"),
    pytest.param({"policy": {"algorithm": "ppo"}}, r"policy.algorithm must be one of 'grpo', 'rloo'; got 'ppo'", id="literal-2"),
    pytest.param({"hidden_context": {"kinds": ["bradley_terry", "gaussian"]}}, r"hidden_context.kinds\[1\] must be one of",
                 id="literal-in-list"),
    pytest.param({"pretrain": {"n_layers": 0}}, "pretrain.n_layers must be > 0, got 0", id="positive"),
    pytest.param({"corpus": {"organism": {"n_train": -5}}}, "corpus.organism.n_train must be > 0, got -5", id="positive-nested"),
    pytest.param({"pretrain": {"max_steps": 0}}, "pretrain.max_steps must be > 0, got 0", id="positive-steps"),
    pytest.param({"pretrain": {"learning_rate": float("nan")}}, "pretrain.learning_rate must be a number, got nan", id="nan"),
    pytest.param({"stages": ["corpus", "pretrian"]}, r"stages\[1\] must be one of 'corpus', 'tokenizer', .*; got 'pretrian'",
                 id="stage-name"),
    pytest.param({"activations": {"hook": "blocks.{layer}.hook_mlpout"}},
                 "activations.hook is not a TransformerLens hook name: 'blocks.{layer}.hook_mlpout'; valid: ", id="hook"),
    pytest.param({"activations": {"hook": "blocks.{layer}.hook_resid_mid"}},
                 "activations.hook = 'blocks.{layer}.hook_resid_mid': parallel-residual blocks", id="hook-architecture"),
    pytest.param({"activations": {"dtype": "float8"}}, "activations.dtype must be one of 'float32', 'bfloat16', 'float16'; got 'float8'",
                 id="dtype"),
    pytest.param({"pretrain": {"n_layers": "four"}}, "pretrain.n_layers must be int, got 'four'", id="type"),
    pytest.param({"nmae": "x"}, "unknown config key 'nmae' in the top level", id="unknown-key"),
    pytest.param({"dictionaries": {"widths": []}}, r"dictionaries.widths must list at least one value, got \[\]",
                 id="empty-list"),
    pytest.param({"divergence": {"layers": [99]}}, r"divergence.layers\[0\] = 99: the model has layers 0-3", id="layer"),
    pytest.param({"policy": {"reward": "study:reward_nope"}},
                 r"policy.reward must be 'study:reward_<a reward model of hidden_context.kinds>' "
                 r"\(study:reward_\(bradley_terry\|mean_variance\|categorical\)\); got 'study:reward_nope'",
                 id="study-reward"),
]


def _toml(data: dict, table: str = "") -> str:
    """The few TOML shapes of the table above: scalars, lists of strings, nested tables."""
    def value(v):
        return f"[{', '.join(value(x) for x in v)}]" if isinstance(v, list) else "nan" if v != v else json.dumps(v)
    scalars = "".join(f"{k} = {value(v)}\n" for k, v in data.items() if not isinstance(v, dict))
    head = f"[{table}]\n" if table and scalars else ""
    return head + scalars + "".join(_toml(v, f"{table}.{k}" if table else k) for k, v in data.items() if isinstance(v, dict))


@pytest.mark.parametrize("data, message", INVALID)
def test_invalid_values_fail_at_load(data, message):
    with pytest.raises(UserError, match=message):
        config_from_dict(data)


@pytest.mark.parametrize("data, message", INVALID)
def test_invalid_values_exit_2_from_the_command_line(data, message, tmp_path, capsys):
    from study.__main__ import main

    config = tmp_path / "bad.toml"
    config.write_text(_toml(data))
    assert main(["run", "--config", str(config), "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and re.search(message, err)
    assert not (tmp_path / "runs").exists()  # nothing was written


# Values that are well-formed but name what is not there: each fails as the run starts, before any stage.
MISSING = [
    pytest.param({"policy": {"reward": "model:/no/such/dir"}},
                 "policy.reward: 'model:/no/such/dir': no such directory /no/such/dir", id="reward-model"),
    pytest.param({"policy": {"reward": "python:no_such_module:fn"}},
                 "policy.reward: 'python:no_such_module:fn': no module 'no_such_module' on the Python path", id="reward-python"),
    pytest.param({"corpus": {"source": "dataset", "dataset": {"path": "{tmp}/empty.txt"}}},
                 "corpus.dataset.path: the file .*empty.txt is empty", id="empty-corpus"),
]


@pytest.mark.parametrize("data, message", MISSING)
def test_what_a_config_names_is_checked_before_any_stage(data, message, tmp_path):
    (tmp_path / "empty.txt").write_text("\n")
    config = tmp_path / "bad.toml"
    config.write_text(_toml(data).replace("{tmp}", str(tmp_path)))
    config_from_dict(json.loads(json.dumps(data)))  # well-formed: it loads
    code = ("import sys\nfrom study.__main__ import main\nrc = main(['run', '--config', *sys.argv[1:]])\n"
            "assert 'torch' not in sys.modules  # answered before the heavy libraries load\nsys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code, str(config), "--runs-dir", str(tmp_path / "runs")], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1 and re.search(message, result.stderr)
    assert not (tmp_path / "runs").exists()  # nothing was written


def test_every_built_in_stage_has_its_section_and_every_section_a_stage():
    """A built-in stage's config is StudyConfig's typed field of its name; StudyConfig holds no other sections
    but [logging], which no stage reads."""
    import dataclasses
    import typing

    from study.config import StudyConfig
    from study.stages import STAGES

    hints = typing.get_type_hints(StudyConfig)
    sections = {f.name for f in dataclasses.fields(StudyConfig) if dataclasses.is_dataclass(hints[f.name])}
    assert sections == {s.name for s in STAGES if s.config is None} | {"logging"}


def test_a_run_written_before_the_diffing_settings_moved_still_loads(tmp_path):
    """config.json of an older run kept the diffing methods' settings flat in [model_diffing]: they load
    into each method's own table, so that status, the report and resuming still read that run."""
    import json

    old = tmp_path / "config.json"
    old.write_text(json.dumps({"model_diffing": {"kl_texts": 50, "steering_alphas": [1.0], "difference_tokens": 1000}}))
    md = load_config(old).model_diffing
    assert md.method("kl").texts == md.method("activation_difference_lens").texts == 50
    assert md.method("activation_difference_lens").steering_alphas == (1.0,)
    assert md.method("difference_dictionary").tokens == md.method("difference_sae").tokens == 1000

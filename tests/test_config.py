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
    ({"nmae": "x"}, "unknown config key 'nmae' in the top level; valid keys: activations, autointerp, conversion, corpus"),
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

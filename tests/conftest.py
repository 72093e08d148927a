"""One tiny study shared by every test that needs trained models (session-scoped)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from jaxtyping import install_import_hook

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Every annotated function of the suite is checked at run time in the tests: jaxtyping
# shapes and dtypes, and the other annotations through beartype. The hook must be installed
# before the packages are first imported.
import tests.typecheck  # noqa: E402,F401  (imported before the hook names it)

_TYPECHECK = install_import_hook(["rlhf", "analysis", "probes", "study"], "tests.typecheck.typechecker")

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.toml"


def run_config(config: Path, runs_dir: Path) -> tuple:
    """A study config run end to end under ``runs_dir``; returns (config, run_dir, log lines)."""
    from study.config import load_config
    from study.pipeline import run_study

    cfg = load_config(config, {"runs_dir": str(runs_dir)})
    lines: list[str] = []
    run_dir = run_study(cfg, log=lines.append)
    return cfg, run_dir, lines


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The tiny config run once end to end; returns (config, run_dir, log lines)."""
    return run_config(TINY, tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="session")
def word_tokenizer(tmp_path_factory):
    """A word-level tokenizer of the study's kind (BOS first, 9 tokens), saved and loaded back:
    what a converted model is given with a model built in memory."""
    from rlhf.tokenizer import TokenizerConfig, build_tokenizer, load_tokenizer

    out = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer(["the plot was superb ."] * 2, TokenizerConfig(), out)
    return load_tokenizer(out)


@pytest.fixture(scope="session")
def local_hub(tmp_path_factory):
    """A hub stand-in on disk: an IMDb-style JSONL file and a Pythia-like (GPT-NeoX, byte-level BPE)
    checkpoint with random weights; returns (data file, model directory)."""
    import json

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

    from rlhf.organisms.sentiment import SentimentOrganism

    root = tmp_path_factory.mktemp("hub")
    organism = SentimentOrganism()
    reviews = [r.text.replace(" .", ".") for r in organism.reviews(400, seed=11)]
    rows = [{"text": f"{t} <br /><br />A second paragraph.", "label": i % 2} for i, t in enumerate(reviews)]
    data = root / "imdb.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(reviews, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                         initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    model_dir = root / "pythia-like"
    tok.save_pretrained(model_dir)
    torch.manual_seed(0)
    GPTNeoXForCausalLM(GPTNeoXConfig(
        vocab_size=320, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        max_position_embeddings=256, rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25},
    )).save_pretrained(model_dir)
    return data, model_dir

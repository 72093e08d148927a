"""A word-level tokenizer built from a corpus and saved in Hugging Face format.

The organism's text is whitespace-separated words, so one word is one token: probes
read activations at a word's position without sub-word bookkeeping.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from rlhf.config import TokenizerConfig  # noqa: F401  (re-exported: callers import it from here)
from rlhf.errors import UserError
from rlhf.rundir import RunDir, atomic_dir, atomic_write_json, read_json

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"


def build_tokenizer(texts: list[str], cfg: TokenizerConfig, out_dir: Path) -> PreTrainedTokenizerFast:
    """Vocabulary = special tokens then corpus words by decreasing frequency; saves to ``out_dir``."""
    counts = Counter(w for t in texts for w in t.split())
    if not counts:
        raise UserError("cannot build a tokenizer from an empty corpus")
    words = sorted((w for w, c in counts.items() if c >= cfg.min_frequency), key=lambda w: (-counts[w], w))
    vocab = {tok: i for i, tok in enumerate([PAD, UNK, BOS, EOS, *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # Prompts and training texts start with BOS, as Pythia-style prompts need it.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, unk_token=UNK, bos_token=BOS, eos_token=EOS
    )
    save_tokenizer(fast, out_dir)
    return fast


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, directory: Path) -> None:
    """``save_pretrained``, naming the class ``PreTrainedTokenizerFast``: transformers 5 writes
    ``TokenizersBackend``, a name transformers 4 (and tools pinned to it, such as SAEDashboard and
    older TransformerLens) cannot load; both versions read ``PreTrainedTokenizerFast``."""
    tokenizer.save_pretrained(str(directory))
    config = Path(directory) / "tokenizer_config.json"
    settings = read_json(config)
    if settings.get("tokenizer_class") == "TokenizersBackend":
        atomic_write_json(config, {**settings, "tokenizer_class": "PreTrainedTokenizerFast"})


def load_tokenizer(path: Path | str, hub: bool = False) -> PreTrainedTokenizerBase:
    """Load a saved tokenizer from disk, or from the hub when ``hub`` and ``path`` is no directory.
    A tokenizer without a padding token pads with its end-of-text token (Pythia, GPT-2); all pad on the right."""
    local = Path(path)
    if not (hub and not local.is_dir()) and not (local / "tokenizer_config.json").exists() and not (local / "tokenizer.json").exists():
        raise UserError(f"no tokenizer in {local}: expected tokenizer.json (run the tokenizer stage first)")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=local.is_dir())
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load a tokenizer from {path}: {str(err).splitlines()[0]}") from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Every reader here pads on the right and indexes real positions (sampling switches to the
    # left itself); a tokenizer saved by a TRL trainer would otherwise come back left-padded.
    tokenizer.padding_side = "right"
    return tokenizer


def tokenizer_stage(cfg: TokenizerConfig, run_dir: RunDir) -> Path:
    """Stage: the word-level tokenizer of the study's training corpus, or a copy of a
    pretrained model's own tokenizer."""
    with atomic_dir(run_dir.tokenizer) as work:
        if cfg.source == "corpus":
            texts = run_dir.texts("train")
            build_tokenizer(texts, cfg, work)
        else:
            save_tokenizer(load_tokenizer(cfg.source, hub=True), work)
    return run_dir.tokenizer

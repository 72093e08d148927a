"""The corpus stage: the study's text, from the embedded organism or from a real dataset.

Either way the stage writes ``corpus/{train,val,test}.txt`` (one text per line) and
``corpus/stats.json``; every later stage reads only those files.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from rlhf.config import LOCAL_FORMATS, CorpusConfig, DatasetConfig  # noqa: F401  (re-exported: callers import it from here)
from rlhf.errors import UserError
from rlhf.organisms.sentiment import write_corpus
from rlhf.results import CorpusResult, SplitStats
from rlhf.rundir import RunDir, atomic_write_text, split_file


def _clean(text: str, max_words: int) -> str:
    text = re.sub(r"<br\s*/?>", " ", text)  # IMDb keeps HTML line breaks
    return " ".join(text.split()[:max_words])


def load_texts(cfg: DatasetConfig) -> list[str]:
    """The dataset's text column, cleaned, with empty rows dropped."""
    import datasets  # deferred: slow to import, and only this path needs it
    from datasets.exceptions import DatasetGenerationError

    if not cfg.path:
        raise UserError("corpus.source is 'dataset' but corpus.dataset.path is empty")
    local = Path(cfg.path)
    try:
        if local.suffix in LOCAL_FORMATS:
            if not local.is_file():
                raise UserError(f"dataset file {local} does not exist")
            ds = datasets.load_dataset(LOCAL_FORMATS[local.suffix], data_files=str(local), split="train")
        else:
            ds = datasets.load_dataset(cfg.path, split=cfg.split)
    except (FileNotFoundError, ValueError, ConnectionError, DatasetGenerationError) as err:
        raise UserError(f"cannot load dataset {cfg.path!r}: {str(err).splitlines()[0]}") from err
    if cfg.text_column not in ds.column_names:
        raise UserError(f"dataset {cfg.path} has no column {cfg.text_column!r}; columns: {', '.join(ds.column_names)}")
    return [t for t in (_clean(x or "", cfg.max_words) for x in ds[cfg.text_column]) if t]


def write_dataset_corpus(cfg: DatasetConfig, out_dir: Path) -> CorpusResult:
    texts = load_texts(cfg)
    need = cfg.n_train + cfg.n_val + cfg.n_test
    if len(texts) < cfg.n_val + cfg.n_test + 1:
        raise UserError(f"dataset {cfg.path} has {len(texts)} non-empty texts; need more than n_val + n_test")
    random.Random(cfg.seed).shuffle(texts)
    texts = texts[:need]
    splits = {"val": texts[: cfg.n_val], "test": texts[cfg.n_val : cfg.n_val + cfg.n_test],
              "train": texts[cfg.n_val + cfg.n_test :]}
    stats = {}
    for name, rows in splits.items():
        atomic_write_text(split_file(out_dir, name), "\n".join(rows) + "\n")
        stats[name] = SplitStats(reviews=len(rows), tokens=sum(len(t.split()) for t in rows))
    return CorpusResult(source=cfg.path, vocabulary_size=len({w for t in texts for w in t.split()}), **stats)


def build_corpus(cfg: CorpusConfig, run_dir: RunDir) -> CorpusResult:
    """Stage: write the corpus splits and their statistics."""
    if cfg.source == "organism":
        result = write_corpus(cfg.organism, run_dir.corpus)
    else:
        result = write_dataset_corpus(cfg.dataset, run_dir.corpus)
    result.save(run_dir)
    return result

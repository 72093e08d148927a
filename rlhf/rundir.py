"""A study's run directory: where each artifact lives, and writing it so that an
interrupted stage never leaves a half-written file.

``RunDir`` owns the layout (DESIGN.md, "Artifacts"): no other module joins path parts
under a run directory. Everything is written to a temporary name beside the target and
renamed when complete (rename is atomic on one filesystem).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rlhf.errors import UserError


def atomic_write(path: Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` on a temporary name beside ``path``, then rename it to ``path``.

    The one atomic writer of the suite: text, JSON, figures and tensors all go through it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Unique per process and thread: two writers of the same file never share a temporary.
    # The suffix is kept so that writers that choose a format by extension (matplotlib) still can.
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}-{threading.get_ident()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Yield a work directory (``.<name>.partial``) that becomes ``path`` on success.

    The work directory survives a crash so the stage can resume from what it holds
    (training checkpoints); a finished ``path`` is replaced only once the new one is whole.
    """
    path = Path(path)
    work = partial_dir(path)
    work.mkdir(parents=True, exist_ok=True)
    yield work
    old = path.with_name(f".{path.name}.old")
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(work, path)
    shutil.rmtree(old, ignore_errors=True)


def partial_dir(path: Path) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


def hook_dirname(hook: str) -> str:
    """A hook name as one path component (hook names hold no slash; this keeps it that way)."""
    if "/" in hook or hook in ("", ".", ".."):
        raise UserError(f"{hook!r} is not a hook name")
    return hook


INDEX = "index.json"  # what a directory of cached activations or of dictionaries holds


def split_file(corpus: Path, split: str) -> Path:
    """A corpus split's texts (``train``, ``val``, ``test``), one per line, in a corpus directory."""
    return corpus / f"{split}.txt"


class RunDir:
    """Where each artifact of a study lives (see DESIGN.md, "Artifacts").

    Directories are properties; files and per-model/per-hook places are methods, so a
    caller names *what* it wants and this class decides *where* it is.
    """

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def __fspath__(self) -> str:
        return str(self.root)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    # top-level areas
    corpus = property(lambda self: self.root / "corpus")
    models = property(lambda self: self.root / "models")
    training = property(lambda self: self.root / "training")
    analysis = property(lambda self: self.root / "analysis")
    probes = property(lambda self: self.root / "probes")
    report = property(lambda self: self.root / "report")
    manifests = property(lambda self: self.root / "manifests")
    config_file = property(lambda self: self.root / "config.json")
    summary_file = property(lambda self: self.report / "summary.json")  # written by study.report.build

    # models: models/<name>/ (HF save_pretrained + tokenizer)
    def model(self, name: str) -> Path:
        return self.models / name

    def model_partial(self, name: str) -> Path:
        """Where a model is trained (checkpoints); renamed to ``model(name)`` when complete."""
        return partial_dir(self.model(name))

    tokenizer = property(lambda self: self.model("tokenizer"))
    base = property(lambda self: self.model("base"))
    policy = property(lambda self: self.model("policy"))

    # activation caches: activations/<model>/<hook>/<split>/ shards + index.json
    activations_root = property(lambda self: self.root / "activations")
    activations_index = property(lambda self: self.activations_root / INDEX)

    def activations(self, model: str, hook: str, split: str) -> Path:
        return self.activations_root / model / hook_dirname(hook) / split

    # dictionaries: saes/<model>/<hook>/<size>[-seed<k>]/ in SAE-Lens format
    saes_root = property(lambda self: self.root / "saes")
    saes_index = property(lambda self: self.saes_root / INDEX)

    def sae(self, model: str, hook: str, size: str, seed: int | None = None) -> Path:
        """A dictionary's directory; ``seed`` names an extra dictionary trained with another seed."""
        return self.saes_root / model / hook_dirname(hook) / (size if seed is None else f"{size}-seed{seed}")

    def transcoder(self, model: str, hook: str, size: str) -> Path:
        """The MLP transcoder that writes ``hook`` (a hook_mlp_out) from the MLP's input."""
        return self.saes_root / model / hook_dirname(hook) / f"{size}-transcoder"

    # stages that keep a directory of their own (model_diffing, autointerp, digits, ...)
    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    # bookkeeping
    def manifest(self, stage: str) -> Path:
        return self.manifests / f"{stage}.json"

    def started_marker(self, stage: str) -> Path:
        return self.manifests / f".{stage}.started"

    def log(self, stage: str) -> Path:
        """Everything a stage's libraries said (warnings, logging, their progress bars' text)."""
        return self.root / "logs" / f"{stage}.log"

    def split_file(self, split: str) -> Path:
        return split_file(self.corpus, split)

    def texts(self, split: str) -> list[str]:
        """The corpus split's texts (``train``, ``val`` or ``test``), one per line."""
        path = self.split_file(split)
        texts = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        if not texts:
            raise UserError(f"the {split} split in {self.corpus} is missing or empty; run the corpus stage")
        return texts

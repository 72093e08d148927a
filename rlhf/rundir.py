"""Writing artifacts so that an interrupted stage never leaves a half-written file.

Everything goes to a temporary name beside the target and is renamed when complete
(rename is atomic on one filesystem).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rlhf.errors import UserError


def atomic_write_text(path: Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Unique per process and thread: two writers of the same file never share a temporary.
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


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


class RunDir:
    """Where each artifact of a study lives (see DESIGN.md, "Artifacts")."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def __fspath__(self) -> str:
        return str(self.root)

    corpus = property(lambda self: self.root / "corpus")
    tokenizer = property(lambda self: self.root / "models" / "tokenizer")
    base = property(lambda self: self.root / "models" / "base")
    policy = property(lambda self: self.root / "models" / "policy")
    training = property(lambda self: self.root / "training")
    analysis = property(lambda self: self.root / "analysis")
    probes = property(lambda self: self.root / "probes")
    report = property(lambda self: self.root / "report")
    manifests = property(lambda self: self.root / "manifests")

    def texts(self, split: str) -> list[str]:
        """The corpus split's texts (``train``, ``val`` or ``test``), one per line."""
        path = self.corpus / f"{split}.txt"
        texts = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        if not texts:
            raise UserError(f"the {split} split in {self.corpus} is missing or empty; run the corpus stage")
        return texts

"""Typed stage results: a frozen dataclass that saves itself into a run directory and
loads back as the same type.

Numbers go to JSON, tensors to a safetensors file beside it. Later stages and the
report read these types, never nested string keys. The JSON conversion follows the
dataclass's type hints (nested dataclasses, tuples, lists, dicts, optionals), so a
result that does not match its declared shape fails at load with the field's name.
Written by hand because neither the standard library nor the pinned stack has a
dataclass <-> JSON mapper (pydantic would be a new dependency for ~80 lines).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, get_args, get_origin

from rlhf.errors import UserError
from rlhf.registry import load
from rlhf.rundir import RunDir, atomic_write, atomic_write_json, read_json

A = TypeVar("A", bound="Artifact")


class Artifact:
    """Base of every stage result, a frozen dataclass that knows where it lives in a run directory.

    A subclass declares ``DIR``, the ``RunDir`` attribute of its directory (``"training"``), ``FILE``,
    its file name there, and ``FIGURES``, its figures' file names by name. A ``{field}`` in a name is
    one of ``KEY``, the fields that tell several artifacts of one type apart (a policy's ``name``, a
    probe's ``model`` and ``features``), mapped to their defaults; a figure's name may take other
    ``{words}`` too (a hook). A subclass whose directory is not a ``RunDir`` attribute overrides
    ``directory``. Producers, the report and the pipeline name these files only through ``path``
    and ``figure``. Fields annotated ``torch.Tensor`` go to ``<path>.safetensors``, the rest to
    ``<path>`` as JSON.
    """

    DIR: ClassVar[str] = ""
    FILE: ClassVar[str] = ""
    KEY: ClassVar[dict[str, str]] = {}
    FIGURES: ClassVar[dict[str, str]] = {}

    @classmethod
    def directory(cls, run: RunDir) -> Path:
        if not cls.DIR:
            raise NotImplementedError(f"{cls.__name__} does not say where it is saved (DIR)")
        return getattr(run, cls.DIR)

    @classmethod
    def _names(cls, key: dict[str, Any]) -> dict[str, Any]:
        return {**cls.KEY, **{k: v for k, v in key.items() if v is not None}}

    @classmethod
    def path(cls, run: RunDir, **key: Any) -> Path:
        """Where the artifact of ``key`` (its KEY fields; defaults for those left out) is saved."""
        unknown = set(key) - set(cls.KEY)
        if unknown:
            raise TypeError(f"{cls.__name__} is told apart by {sorted(cls.KEY) or 'nothing'}, not {sorted(unknown)}")
        return cls.directory(run) / cls.FILE.format(**cls._names(key))

    @classmethod
    def figure(cls, run: RunDir, which: str, /, **words: Any) -> Path:
        """The figure ``which`` beside the artifact (``FIGURES``), its ``{words}`` filled in."""
        return cls.directory(run) / cls.FIGURES[which].format(**cls._names(words))

    @classmethod
    def exists(cls, run: RunDir, **key: Any) -> bool:
        return cls.path(run, **key).exists()

    def key(self) -> dict[str, Any]:
        """This artifact's KEY fields."""
        return {k: getattr(self, k) for k in self.KEY}

    def save(self, run: RunDir, path: Path | None = None) -> Path:
        """Into the run directory, or to ``path`` (a command line's ``--out``)."""
        path = path or self.path(run, **self.key())
        tensors = {f: getattr(self, f) for f in _tensor_fields(type(self))}
        if tensors:
            from safetensors.torch import save_file

            atomic_write(_tensor_path(path), lambda tmp: save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp)))
        return atomic_write_json(path, to_json(self))

    @classmethod
    def read(cls: type[A], path: Path) -> A:
        """The artifact saved at ``path`` (in a run directory or anywhere else)."""
        path = Path(path)
        if not path.exists():
            raise UserError(f"{path} does not exist: run the stage that writes it first")
        data = read_json(path)
        if _tensor_fields(cls):
            from safetensors.torch import load_file

            data.update(load_file(str(_tensor_path(path))))
        return from_json(cls, data, where=str(path))

    @classmethod
    def load(cls: type[A], run: RunDir, **key: Any) -> A:
        return cls.read(cls.path(run, **key))

    @classmethod
    def load_if_exists(cls: type[A], run: RunDir, **key: Any) -> A | None:
        return cls.load(run, **key) if cls.exists(run, **key) else None

    @classmethod
    def all(cls: type[A], run: RunDir) -> list[A]:
        """Every artifact of this type in the run, whatever its key (sorted by file name)."""
        pattern = cls.FILE.format(**{k: "*" for k in cls.KEY})
        return [cls.read(p) for p in sorted(cls.directory(run).glob(pattern))] if cls.directory(run).is_dir() else []


def _tensor_path(path: Path) -> Path:
    return path.with_suffix(".safetensors")


@dataclasses.dataclass(frozen=True)
class ByName:
    """Marks a dict field whose values' types depend on their keys (``Annotated[dict[str, Any],
    ByName(kind)]``): each method's own record, its type read from a registry as the field loads."""

    # "module:function", key -> the type its value loads as: named, not imported, so that a result
    # type does not import the registry that names it
    kind: str


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


@functools.cache
def _tensor_fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if _is_tensor(_hints(cls)[f.name]))


def _is_tensor(kind: Any) -> bool:
    return getattr(kind, "__name__", None) == "Tensor" and getattr(kind, "__module__", "").startswith("torch")


def to_json(obj: Any) -> Any:
    """A dataclass (or container of them) as plain JSON values; tensors are left out (saved apart)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        hints = _hints(type(obj))
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj) if not _is_tensor(hints[f.name])}
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_json(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:  # numpy / torch scalars
        return obj.item()
    return obj


def from_json(kind: Any, data: Any, where: str = "") -> Any:
    """``data`` (plain JSON values) as an instance of ``kind``, following its type hints."""
    origin, args = get_origin(kind), get_args(kind)
    if kind is Any or _is_tensor(kind):
        return data
    if origin is typing.Annotated:
        by_name = next((m for m in args[1:] if isinstance(m, ByName)), None)
        if by_name is None:
            return from_json(args[0], data, where)
        kind_of = load(by_name.kind)
        return {k: from_json(kind_of(k), v, f"{where}.{k}") for k, v in data.items()}
    if dataclasses.is_dataclass(kind):
        if not isinstance(data, dict):
            raise UserError(f"{where}: expected a table for {kind.__name__}, got {type(data).__name__}")
        hints = _hints(kind)
        names = {f.name for f in dataclasses.fields(kind)}
        missing = [f.name for f in dataclasses.fields(kind) if f.name not in data
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise UserError(f"{where}: {kind.__name__} is missing {missing[0]!r} (written by an older version? re-run its stage)")
        return kind(**{k: from_json(hints[k], v, f"{where}.{k}") for k, v in data.items() if k in names})
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return from_json(options[0], data, where) if len(options) == 1 else data
    if origin is Literal:
        return data
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_json(args[0], v, where) for v in data)
        return tuple(from_json(a, v, where) for a, v in zip(args, data, strict=True)) if args else tuple(data)
    if origin is list:
        return [from_json(args[0], v, where) for v in data] if args else list(data)
    if origin is dict:
        key, value = args if args else (str, Any)
        return {from_json(key, k, where): from_json(value, v, f"{where}.{k}") for k, v in data.items()}
    if kind is float and isinstance(data, int):
        return float(data)
    if kind is int and isinstance(data, str):  # JSON object keys are strings
        return int(data)
    return data

"""The activation cache's indexes (``activations/index.json`` and one per cached hook)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rlhf.artifact import Artifact
from rlhf.rundir import INDEX, RunDir


@dataclass(frozen=True)
class CachedHook:
    """One cached (model, hook, split): its shards, token and text counts. Not an Artifact: it lives
    in the cache directory itself (``run.activations(model, hook, split)``)."""

    hook: str
    shards: tuple[str, ...]  # file names inside the directory
    n_tokens: int
    n_texts: int
    d: int  # width of the activations (d_model)
    dtype: str  # storage dtype

    FILE = INDEX  # in each cached hook's directory

    @classmethod
    def read(cls, directory: Path) -> CachedHook:
        from rlhf.artifact import from_json
        from rlhf.errors import UserError
        from rlhf.rundir import read_json

        path = Path(directory) / cls.FILE
        if not path.exists():
            raise UserError(f"{path} does not exist: run the activations stage first")
        return from_json(cls, read_json(path), where=str(path))

    def write(self, directory: Path) -> Path:
        from rlhf.artifact import to_json
        from rlhf.rundir import atomic_write_json

        return atomic_write_json(Path(directory) / self.FILE, to_json(self))


@dataclass(frozen=True)
class ActivationIndex(Artifact):
    """``activations/index.json``: which hooks of which models are cached, and how many tokens."""

    hooks: tuple[str, ...]  # one per chosen layer, in the order of ``layers``: the kind every analysis reads
    layers: tuple[int, ...]
    models: dict[str, dict[str, dict[str, int]]]  # model -> split ("train", "val") -> hook -> cached tokens
    dtype: str = "float32"  # storage dtype of the shards
    d_model: int = 0  # width of the cached activations
    texts: dict[str, int] = field(default_factory=dict)  # split -> texts cached
    # The other hook kinds cached at the same layers (activations.extra_hooks), layer by layer in the order of
    # ``layers``: they have their own dictionaries, which reward attribution, model diffing and circuits read.
    extra_hooks: tuple[str, ...] = ()
    transcoder_inputs: tuple[str, ...] = ()  # MLP inputs cached for transcoders (activations.transcoder_inputs)

    @classmethod
    def path(cls, run: RunDir) -> Path:
        return run.activations_index

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(self.models)

    @property
    def by_layer(self) -> dict[int, str]:
        """Layer -> its cached hook."""
        return dict(zip(self.layers, self.hooks, strict=True))

    @property
    def all_hooks(self) -> tuple[str, ...]:
        """Every cached hook, of every kind."""
        return self.hooks + self.extra_hooks

    def layer_of(self, hook: str) -> int:
        """The layer at which ``hook`` was cached."""
        if hook in self.hooks:
            return self.layers[self.hooks.index(hook)]
        return self.layers[self.extra_hooks.index(hook) * len(self.layers) // len(self.extra_hooks)]

    def hooks_at(self, layers: tuple[int, ...] | list[int] | None, every_kind: bool = False) -> tuple[str, ...]:
        """The cached hooks of ``layers`` (all when None or empty), of the main kind or with ``every_kind`` of
        all kinds (layer by layer); a layer not cached is a UserError."""
        if layers:
            missing = [layer for layer in layers if layer not in self.by_layer]
            if missing:
                from rlhf.errors import UserError

                raise UserError(f"layer(s) {missing} are not cached; cached layers: {sorted(self.by_layer)}")
        wanted = set(layers) if layers else set(self.layers)
        hooks = self.all_hooks if every_kind else self.hooks
        return tuple(sorted((h for h in hooks if self.layer_of(h) in wanted),
                            key=lambda h: (self.layers.index(self.layer_of(h)), hooks.index(h))))

    def tokens(self, model: str, split: str, hook: str | None = None) -> int:
        """Cached tokens of ``model``'s ``split`` at ``hook`` (the first hook by default; every hook
        of a model holds the same token stream)."""
        per_hook = self.models[model][split]
        return per_hook[hook] if hook is not None else next(iter(per_hook.values()))

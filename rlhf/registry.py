"""What the suite's registries share: an entry names its code as ``"package.module:attr"``,
imported only when it is used, so that a registry (read by configs and the report) stays light."""

from __future__ import annotations

import importlib
from typing import Any


def load(target: str) -> Any:
    """The attribute ``target`` names (``"package.module:attr"``), its module imported."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)

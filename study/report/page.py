"""The jinja2 environment every section renders with: autoescaping on, and the filters
and globals the templates share (numbers, verdicts, inline figures)."""

from __future__ import annotations

import base64
import functools
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

TEMPLATES = Path(__file__).parent / "templates"


def num(x: Any) -> str:
    """A table cell's number: floats to four significant digits, the rest as they are."""
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def verdict(ok: bool) -> Markup:
    return Markup("<span class='pass'>PASS</span>" if ok else "<span class='fail'>FAIL</span>")


def img(path: Path, alt: str) -> Markup:
    """A PNG inlined as a data URI (the page must work offline); nothing when the figure is missing."""
    path = Path(path)
    if not path.exists():
        return Markup("")
    data = base64.b64encode(path.read_bytes()).decode()
    return Markup("<img alt='{}' src='data:image/png;base64,{}'>").format(alt, data)


def is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every value is text unless a section marks it Markup
        undefined=jinja2.StrictUndefined,  # a misspelt context key is an error, not an empty cell
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = num
    env.globals.update(verdict=verdict, img=img, is_number=is_number)
    return env


def render(template: str, **context: Any) -> Markup:
    return Markup(environment().get_template(template).render(**context))

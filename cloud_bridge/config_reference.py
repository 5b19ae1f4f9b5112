"""Renders the bridge's configuration reference (Markdown) from the config models.

`python -m cloud_bridge.config_reference` prints it; docs/bridge.md carries a copy that
a test keeps in step with the code.
"""

from __future__ import annotations

import typing
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from cloud_bridge.config import BridgeConfig

BEGIN = "<!-- bridge-config-reference:begin -->"
END = "<!-- bridge-config-reference:end -->"


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in get_args(annotation))
    if origin in (UnionType, typing.Union):
        names = [_type_name(a) for a in get_args(annotation) if a is not NoneType]
        return " or ".join(names) + (" or null" if NoneType in get_args(annotation) else "")
    if annotation is Path:
        return "path"
    return str(getattr(annotation, "__name__", annotation))


def _default(field: FieldInfo) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "**required**"
    if field.default is None:
        return "null"
    return f"`{field.default}`"


def _nested(annotation: Any) -> type[BaseModel] | None:
    for candidate in get_args(annotation) or (annotation,):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows, nested = [], []
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}"
        rows.append(
            f"| `{key}` | {_type_name(field.annotation)} | {_default(field)} "
            f"| {field.description} |"
        )
        inner = _nested(field.annotation)
        if inner is not None:
            nested += _rows(inner, key)
    return rows + nested


def render() -> str:
    """The reference: one table per section."""
    lines = [BEGIN]
    for name, field in BridgeConfig.model_fields.items():
        section = _nested(field.annotation)
        assert section is not None
        lines += [
            "",
            f"#### `{name}`: {field.description}",
            "",
            "| key | type | default | meaning |",
            "|---|---|---|---|",
            *_rows(section, name),
        ]
    lines.append(END)
    return "\n".join(lines)


if __name__ == "__main__":
    print(render())

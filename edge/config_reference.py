"""Renders the configuration reference (Markdown) from the config models themselves.

`python -m edge.config_reference` prints it; the README carries a copy that a test
keeps in step with the code.
"""

from __future__ import annotations

import typing
from datetime import time
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from edge.camera import CameraConfig
from edge.config import EdgeConfig

BEGIN = "<!-- config-reference:begin -->"
END = "<!-- config-reference:end -->"


def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in get_args(annotation))
    if origin in (UnionType, typing.Union):
        names = [_type_name(a) for a in get_args(annotation) if a is not NoneType]
        optional = NoneType in get_args(annotation)
        return " or ".join(names) + (" or null" if optional else "")
    if annotation is time:
        return "HH:MM"
    if annotation is Path:
        return "path"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: Any) -> str:
    if field.default is PydanticUndefined and field.default_factory is None:
        return "**required**"
    if field.default_factory is not None:
        return "(section)"
    value = field.default
    if value is None:
        return "null"
    if isinstance(value, time):
        return f"`{value.strftime('%H:%M')}`"
    return f"`{value}`"


def _table(model: type[BaseModel], prefix: str, skip: frozenset[str] = frozenset()) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            continue
        if _model_variants(annotation):
            continue
        rows.append(
            f"| `{prefix}{name}` | {_type_name(annotation)} | {_default(field)} | "
            f"{field.description or ''} |"
        )
    return rows


def _model_variants(annotation: Any) -> list[type[BaseModel]]:
    """The config models of a union of them (sensor models); empty for anything else."""
    if get_origin(annotation) not in (UnionType, typing.Union):
        return []
    models: list[Any] = []
    for arg in get_args(annotation):
        if get_origin(arg) is typing.Annotated:
            arg = get_args(arg)[0]
        models += get_args(arg) if get_origin(arg) in (UnionType, typing.Union) else [arg]
    models = [a for a in models if a is not NoneType]
    if len(models) < 2 or not all(isinstance(a, type) and issubclass(a, BaseModel) for a in models):
        return []
    return models


def _variant_tables(model: type[BaseModel], prefix: str) -> list[str]:
    """One table per model of a section's union fields, each headed by its tag."""
    header = ["| key | type | default | meaning |", "|---|---|---|---|"]
    out: list[str] = []
    for name, field in model.model_fields.items():
        for variant in _model_variants(field.annotation):
            tag = get_args(variant.model_fields["model"].annotation)[0]
            doc = (variant.__doc__ or "").strip().rstrip(".")
            out += ["", f"`{prefix}{name}.model: {tag}` ({doc}):", ""]
            rows = _table(variant, f"{prefix}{name}.", skip=frozenset({"model"}))
            out += header + rows if rows else ["No settings."]
    return out


def render() -> str:
    """The whole reference as Markdown."""
    header = ["| key | type | default | meaning |", "|---|---|---|---|"]
    out: list[str] = []
    for section, field in EdgeConfig.model_fields.items():
        out.append(f"#### `{section}`: {field.description}")
        out.append("")
        if section == "camera":
            for backend in get_args(get_args(CameraConfig)[0]):
                tag = get_args(backend.model_fields["backend"].annotation)[0]
                doc = (backend.__doc__ or "").strip().rstrip(".")
                out.append(f"`camera.backend: {tag}` ({doc}):")
                out.append("")
                out.extend(header + _table(backend, "camera.", skip=frozenset({"backend"})))
                out.append("")
            continue
        model = field.annotation
        if get_origin(model) in (UnionType, typing.Union):
            model = next(a for a in get_args(model) if a is not NoneType)
        assert isinstance(model, type) and issubclass(model, BaseModel)
        out.extend(header + _table(model, f"{section}."))
        for sub_name, sub_field in model.model_fields.items():
            sub = sub_field.annotation
            if get_origin(sub) in (UnionType, typing.Union):
                sub = next((a for a in get_args(sub) if a is not NoneType), None)
            if isinstance(sub, type) and issubclass(sub, BaseModel):
                out.extend(_table(sub, f"{section}.{sub_name}."))
        out.extend(_variant_tables(model, f"{section}."))
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def update(readme: Path) -> bool:
    """Rewrite the reference between the markers in `readme`; True when it changed."""
    text = readme.read_text(encoding="utf-8")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    new = text[:start] + "\n" + render() + text[end:]
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--update"]:
        changed = update(Path(sys.argv[2]))
        print("updated" if changed else "up to date")
    else:
        print(render(), end="")

"""YAML config files into pydantic models: env overrides, one error line per problem.

Shared by the edge agent and the cloud bridge, so both report a bad config the same
way: the field path, what is wrong, the value given.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
Location = Callable[[tuple[int | str, ...]], str]
ErrorFactory = Callable[[list[str], str], Exception]


def dotted(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a dotted field path."""
    return ".".join(str(p) for p in loc) or "(top level)"


def apply_env(data: dict[str, Any], env: Mapping[str, str], prefix: str) -> dict[str, Any]:
    """Override fields from `<prefix><SECTION>__<FIELD>` variables (values read as YAML)."""
    merged = dict(data)
    for key, raw in env.items():
        if not key.startswith(prefix):
            continue
        path = [p.lower() for p in key[len(prefix) :].split("__") if p]
        if not path:
            continue
        node = merged
        for part in path[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        try:
            node[path[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError:
            node[path[-1]] = raw
    return merged


def describe_errors(exc: ValidationError, location: Location = dotted) -> list[str]:
    """One line per problem: field path, what is wrong and the value that was given."""
    lines = []
    for err in exc.errors(include_url=False):
        where = location(err["loc"])
        kind = err["type"]
        message = str(err["msg"]).removeprefix("Value error, ")
        if kind == "missing":
            lines.append(f"{where}: required setting is missing")
        elif kind == "extra_forbidden":
            lines.append(f"{where}: unknown setting (check spelling and section)")
        elif kind == "union_tag_not_found":
            field = str(err.get("ctx", {}).get("discriminator", "type")).strip("'")
            lines.append(f"{where}.{field}: required setting is missing")
        elif kind in ("union_tag_invalid", "model_type") or where == "(top level)":
            lines.append(f"{where}: {message}")
        else:
            lines.append(f"{where}: {message}; got {err['input']!r}")
    return lines


def validate(
    model: type[M],
    data: object,
    *,
    env: Mapping[str, str] | None,
    prefix: str,
    source: str,
    error: ErrorFactory,
    location: Location = dotted,
) -> M:
    """Validate parsed YAML (plus environment overrides) into `model`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise error([f"(top level): expected a mapping of sections, got {data!r}"], source)
    merged = apply_env(data, os.environ if env is None else env, prefix)
    try:
        return model.model_validate(merged)
    except ValidationError as exc:
        raise error(describe_errors(exc, location), source) from None


def read_yaml(path: Path, error: ErrorFactory) -> object:
    """Parse a YAML file; every failure becomes `error` with a line naming what and where."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(["file does not exist"], str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error([f"cannot be read: {exc}"], str(path)) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        problem = getattr(exc, "problem", None) or str(exc)
        raise error([f"{where}: invalid YAML: {problem}"], str(path)) from None

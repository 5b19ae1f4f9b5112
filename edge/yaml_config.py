"""YAML config files into pydantic models: env overrides, one error line per problem.

Shared by the edge agent and the cloud bridge, so both report a bad config the same
way: the field path, what is wrong, the value given.

A config file is small and written by people, so the parser refuses anything that
only an attacker writes before it builds a single object: files over 1 MiB, nesting
deeper than 32 levels, anchors and aliases that expand past 10,000 values (the "billion
laughs"), and integers longer than 100 digits.
"""

from __future__ import annotations

import difflib
import os
import re
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

MAX_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_VALUES = 10_000
MAX_INT_DIGITS = 100
SHOWN_VALUE_CHARS = 60
_DECIMAL = re.compile(r"[-+]?[0-9][0-9_]*\Z")

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
            node[path[-1]] = parse_yaml(raw)
        except (yaml.YAMLError, YamlLimitError):
            node[path[-1]] = raw
    return merged


def shown(value: object) -> str:
    """A value as the error line shows it: repr, clipped so a huge value cannot flood it."""
    text = repr(value)
    if len(text) > SHOWN_VALUE_CHARS:
        return f"{text[:SHOWN_VALUE_CHARS]}... ({len(text)} characters)"
    return text


def _choices(ctx: Mapping[str, Any], key: str) -> str:
    found = re.findall(r"'([^']*)'", str(ctx.get(key, "")))
    return ", ".join(found)


# pydantic error type -> plain words; `ctx` fills the placeholders.
_PLAIN: dict[str, str] = {
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
    "greater_than": "must be more than {gt}",
    "less_than": "must be less than {lt}",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "int_parsing_size": "must be a whole number of sensible size",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be text",
    "string_too_short": "must have at least {min_length} characters",
    "string_too_long": "must have at most {max_length} characters",
    "path_type": "must be a file or folder path",
    "time_parsing": "must be a time of day such as 06:30",
    "time_type": "must be a time of day such as 06:30",
    "finite_number": "must be a finite number",
    "model_type": "must be a section (settings indented under it)",
    "model_attributes_type": "must be a section (settings indented under it)",
    "dict_type": "must be a section (settings indented under it)",
}


def plain_message(err: Mapping[str, Any]) -> str:
    """What is wrong, in words a grower reads; pydantic's own text only as a fallback."""
    kind = str(err["type"])
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    if kind == "literal_error":
        return f"must be one of: {_choices(ctx, 'expected')}"
    if kind == "union_tag_invalid":
        allowed = _choices(ctx, "expected_tags")
        return f"{shown(ctx.get('tag'))} is not allowed; choose one of: {allowed}"
    if kind in _PLAIN:
        try:
            whole = {
                k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in ctx.items()
            }
            return _PLAIN[kind].format(**whole)
        except (KeyError, IndexError):
            pass
    return str(err["msg"]).removeprefix("Value error, ")


def _unwrap(annotation: Any) -> list[type[BaseModel]]:
    """The config models an annotation can hold (Optional and unions unpacked)."""
    if get_origin(annotation) is typing.Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (UnionType, typing.Union):
        found = []
        for arg in get_args(annotation):
            if arg is not NoneType:
                found += _unwrap(arg)
        return found
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _is_tag(model: type[BaseModel], value: object) -> bool:
    return any(
        get_origin(f.annotation) is Literal and value in get_args(f.annotation)
        for f in model.model_fields.values()
    )


def _model_at(root: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model that holds the last element of `loc` (tags of tagged unions skipped)."""
    model: type[BaseModel] | None = root
    parts = list(loc[:-1])
    while parts and model is not None:
        field = model.model_fields.get(str(parts.pop(0)))
        candidates = _unwrap(field.annotation) if field is not None else []
        if len(candidates) > 1 and parts:
            tag = parts.pop(0)
            candidates = [m for m in candidates if _is_tag(m, tag)]
        model = candidates[0] if len(candidates) == 1 else None
    return model


def did_you_mean(root: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    """A hint for an unknown key: the closest known key there, or the section it belongs in."""
    model = _model_at(root, loc)
    key = str(loc[-1])
    if model is None:
        return ""
    close = difflib.get_close_matches(key, list(model.model_fields), n=1, cutoff=0.6)
    if close:
        return f"; did you mean '{close[0]}'?"
    if model is root:
        homes = [
            name
            for name, field in root.model_fields.items()
            if any(key in m.model_fields for m in _unwrap(field.annotation))
        ]
        if homes:
            options = " or ".join(f"{h}.{key}" for h in homes)
            return f"; it belongs in a section: did you mean {options}?"
    return ""


def describe_errors(
    exc: ValidationError, location: Location = dotted, model: type[BaseModel] | None = None
) -> list[str]:
    """One line per problem: field path, what is wrong in plain words, the value given."""
    lines = []
    for err in exc.errors(include_url=False):
        where = location(err["loc"])
        kind = err["type"]
        if kind == "missing":
            lines.append(f"{where}: required setting is missing")
        elif kind == "extra_forbidden":
            hint = did_you_mean(model, err["loc"]) if model is not None and err["loc"] else ""
            lines.append(f"{where}: unknown setting{hint or ' (check spelling and section)'}")
        elif kind == "union_tag_not_found":
            field = str(err.get("ctx", {}).get("discriminator", "type")).strip("'")
            lines.append(f"{where}.{field}: required setting is missing")
        elif kind == "union_tag_invalid":
            field = str(err.get("ctx", {}).get("discriminator", "type")).strip("'")
            lines.append(f"{where}.{field}: {plain_message(err)}")
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            lines.append(f"{where}: {plain_message(err)}; got {shown(err['input'])}")
        elif where == "(top level)" or (
            err["type"] == "value_error" and isinstance(err["input"], dict)
        ):
            # A rule across fields: the input is the whole section, not worth printing.
            lines.append(f"{where}: {plain_message(err)}")
        else:
            lines.append(f"{where}: {plain_message(err)}; got {shown(err['input'])}")
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
        raise error(describe_errors(exc, location, model), source) from None


class YamlLimitError(ValueError):
    """A YAML text goes past one of the parser's limits; `where` names the place."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")


def _where(event: yaml.Event) -> str:
    mark = event.start_mark
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"


def check_limits(text: str) -> None:
    """Walk the YAML event stream (no objects built) and raise YamlLimitError past a limit.

    Each anchored node's expanded size is remembered, so an alias costs what it
    expands to: this is what makes an alias bomb visible before it is built.
    """
    sizes: dict[str, int] = {}
    stack: list[list[Any]] = [[None, 0]]  # [anchor, values counted so far] per open node
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(stack) > MAX_DEPTH:
                raise YamlLimitError(_where(event), f"nested deeper than {MAX_DEPTH} levels")
            stack.append([event.anchor, 1])
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, size = stack.pop()
        elif isinstance(event, yaml.ScalarEvent):
            anchor, size = event.anchor, 1
            digits = event.value.replace("_", "").lstrip("+-")
            if event.style is None and _DECIMAL.match(event.value) and len(digits) > MAX_INT_DIGITS:
                raise YamlLimitError(_where(event), f"a number longer than {MAX_INT_DIGITS} digits")
        elif isinstance(event, yaml.AliasEvent):
            anchor, size = None, sizes.get(str(event.anchor), 1)
        else:
            continue
        if anchor is not None:
            sizes[str(anchor)] = size
        stack[-1][1] += size
        if stack[0][1] > MAX_VALUES or stack[-1][1] > MAX_VALUES:
            raise YamlLimitError(
                _where(event),
                f"expands to more than {MAX_VALUES} values (anchors and aliases '&'/'*')",
            )


def parse_yaml(text: str) -> object:
    """Parse YAML within the limits above; raises YamlLimitError or yaml.YAMLError."""
    if len(text) > MAX_BYTES:
        raise YamlLimitError("file", f"larger than {MAX_BYTES // 1024} KiB")
    check_limits(text)
    return yaml.safe_load(text)


def read_yaml(path: Path, error: ErrorFactory) -> object:
    """Parse a YAML file; every failure becomes `error` with a line naming what and where."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise error(["file does not exist"], str(path)) from None
    except IsADirectoryError:
        raise error(["is a folder, not a config file"], str(path)) from None
    except OSError as exc:
        raise error([f"cannot be read: {exc.strerror or exc}"], str(path)) from None
    except UnicodeDecodeError:
        raise error(["is not UTF-8 text"], str(path)) from None
    try:
        return parse_yaml(text)
    except YamlLimitError as exc:
        raise error([f"{exc.where}: refused: {exc.problem}"], str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        problem = getattr(exc, "problem", None) or str(exc)
        raise error([f"{where}: invalid YAML: {problem}"], str(path)) from None
    except (RecursionError, ValueError, OverflowError) as exc:
        # Belt and braces behind the limits above: no YAML input may end in a traceback.
        raise error([f"YAML: cannot be read: {str(exc)[:200]}"], str(path)) from None

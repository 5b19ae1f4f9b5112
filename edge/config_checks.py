"""Checks of the files and folders a valid config names, so a bad path fails at check time.

`check-config` reports every one of them; `run`, `capture` and `selftest` refuse to
start on the ones the agent could not run without (secrets, TLS files, the data folder)
instead of dying with a traceback later. Nothing here writes a file or opens a socket.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from edge import yaml_config
from edge.camera import CameraConfig
from edge.camera.replay import ReplayCameraSettings
from edge.config import (
    ENV_PREFIX,
    EdgeConfig,
    ModelConfig,
    MqttConfig,
    StorageConfig,
    config_from_data,
)
from edge.errors import ConfigError
from edge.inference.manifest import LABELS_NAME, MANIFEST_NAME
from edge.path_checks import PathProblem, secret_file, tls_files, writable_folder
from edge.web.settings import WebConfig

MODEL_FILES = ("model.tflite", LABELS_NAME, MANIFEST_NAME)
MIN_TOKEN_CHARS = 16


def camera_paths(camera: Any) -> Iterator[PathProblem]:
    """The replay camera's folder must exist (a missing USB camera is not a config error)."""
    if isinstance(camera, ReplayCameraSettings) and not camera.folder.is_dir():
        yield PathProblem("camera.folder", f"folder {camera.folder} does not exist", fatal=False)


def model_paths(model: ModelConfig) -> Iterator[PathProblem]:
    """A configured model folder holds the model, its labels and its manifest."""
    if not model.enabled or model.dir is None:
        return
    if not model.dir.is_dir():
        yield PathProblem("model.dir", f"folder {model.dir} does not exist", fatal=False)
        return
    absent = [name for name in MODEL_FILES if not (model.dir / name).is_file()]
    if absent:
        yield PathProblem("model.dir", f"{model.dir} has no {', '.join(absent)}", fatal=False)


def mqtt_paths(mqtt: MqttConfig) -> Iterator[PathProblem]:
    """The broker password and TLS files, when publishing is on."""
    if not mqtt.enabled:
        return
    if mqtt.password_file is not None:
        yield from secret_file("mqtt.password_file", mqtt.password_file)
    if mqtt.tls is not None:
        yield from tls_files("mqtt.tls", mqtt.tls)


def web_paths(web: WebConfig) -> Iterator[PathProblem]:
    """The scrape token file, when the page is served."""
    if web.enabled and web.metrics_token_file is not None:
        yield from secret_file("web.metrics_token_file", web.metrics_token_file, MIN_TOKEN_CHARS)


def storage_paths(storage: StorageConfig) -> Iterator[PathProblem]:
    """The data folder exists and is writable, or can be created."""
    yield from writable_folder("storage.dir", storage.dir)


Check = Callable[[Any], Iterator[PathProblem]]
# section -> (its type, for validating it alone; its path check)
_SECTION_CHECKS: dict[str, tuple[Any, Check]] = {
    "camera": (CameraConfig, camera_paths),
    "model": (ModelConfig, model_paths),
    "mqtt": (MqttConfig, mqtt_paths),
    "web": (WebConfig, web_paths),
    "storage": (StorageConfig, storage_paths),
}


def path_problems(config: EdgeConfig) -> list[PathProblem]:
    """Every problem with a path a valid config names."""
    found: list[PathProblem] = []
    for section, (_, check) in _SECTION_CHECKS.items():
        found.extend(check(getattr(config, section)))
    return found


def startup_problems(config: EdgeConfig) -> list[str]:
    """The path problems the agent cannot start with, one line each."""
    return [str(p) for p in path_problems(config) if p.fatal]


def section_path_problems(data: Mapping[str, Any]) -> list[PathProblem]:
    """Path problems of each section that is valid on its own, for a config that is not.

    This is what lets check-config report a missing password file in the same pass as
    a typo in another section.
    """
    found: list[PathProblem] = []
    for section, (kind, check) in _SECTION_CHECKS.items():
        raw = data.get(section)
        if raw is None:
            value = EdgeConfig.model_fields[section].get_default(call_default_factory=True)
        else:
            value = _validate_known(TypeAdapter(kind), raw)
        if value is not None:
            found.extend(check(value))
    return found


def _validate_known(adapter: TypeAdapter[Any], raw: object) -> Any:
    """The section validated with its unknown keys left out, or None if still invalid.

    A misspelt key must not hide a missing file named beside it; other problems are
    already reported by the full validation.
    """
    try:
        return adapter.validate_python(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    if not isinstance(raw, dict) or any(e["type"] != "extra_forbidden" for e in errors):
        return None
    cleaned = {k: v for k, v in raw.items() if not any(e["loc"][-1:] == (k,) for e in errors)}
    try:
        return adapter.validate_python(cleaned)
    except ValidationError:
        return None


def check_file(path: Path, env: Mapping[str, str] | None = None) -> tuple[list[str], list[str]]:
    """Every problem of a config file in one pass: YAML, fields, rules across fields, paths.

    Returns (errors, warnings). Warnings are paths the agent starts without (a replay
    folder or model folder not there yet: provisioning may install them after the
    config); errors are everything the agent refuses or cannot run with.
    """
    try:
        data = yaml_config.read_yaml(path, ConfigError)
    except ConfigError as exc:
        return exc.problems, []
    env = os.environ if env is None else env
    errors: list[str] = []
    try:
        found = path_problems(config_from_data(data, env, str(path)))
    except ConfigError as exc:
        merged = yaml_config.apply_env(data, env, ENV_PREFIX) if isinstance(data, dict) else {}
        errors = exc.problems
        found = section_path_problems(merged)
    errors += [str(p) for p in found if p.fatal]
    return errors, [str(p) for p in found if not p.fatal]

"""Commands from the broker: validated, executed one at a time, each answered.

Every command gets a `cmd_result` (ok, or a clear error); nothing a sender puts in
a command can crash the agent.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, Protocol

from pydantic import ValidationError

from edge.config import describe_errors
from edge.errors import CultivaiError
from edge.jsonbounds import loads as bounded_loads
from edge.protocol import (
    COMMANDS,
    CaptureCommand,
    CaptureEmptySceneCommand,
    Command,
    CommandResult,
    ReloadModelCommand,
    ResendCommand,
    ResetBaselineCommand,
    SetScheduleCommand,
)
from edge.supervise import Supervisor

log = logging.getLogger(__name__)
MAX_COMMAND_BYTES = 64 * 1024
MAX_COMMAND_DEPTH = 8  # commands are flat objects; one level of lists at most
MAX_QUEUED = 100


class CommandTarget(Protocol):
    """What commands act on (the agent)."""

    def command_capture(self) -> dict[str, Any]:
        """Capture now; detail for the result."""
        ...

    def command_reload_model(self) -> dict[str, Any]:
        """Reload the model files."""
        ...

    def command_resend(self, from_seq: int, to_seq: int) -> dict[str, Any]:
        """Queue stored observations again."""
        ...

    def command_set_schedule(self, cmd: SetScheduleCommand) -> dict[str, Any]:
        """Change the schedule until restart."""
        ...

    def command_reset_baseline(self) -> dict[str, Any]:
        """Forget the grow baseline (a new grow starts)."""
        ...

    def command_capture_empty_scene(self) -> dict[str, Any]:
        """Photograph the empty scene as the background."""
        ...


def load_payload(payload: bytes) -> Any:
    """The JSON of a command payload ({} when empty); every command is parsed only here.

    Size and nesting are bounded before the parser runs, so no payload can exhaust the
    stack; raises ValueError (incl. UnicodeDecodeError) with a message fit for the sender.
    """
    if len(payload) <= MAX_COMMAND_BYTES and not payload.strip():
        return {}
    try:
        return bounded_loads(payload, MAX_COMMAND_BYTES, MAX_COMMAND_DEPTH)
    except json.JSONDecodeError as exc:
        raise ValueError(f"payload is not valid JSON: {exc.msg} at position {exc.pos}") from None


def parse_command(name: str, payload: bytes) -> Command:
    """Validate a command; raises ValueError with a message fit for the sender."""
    kind = COMMANDS.get(name)
    if kind is None:
        raise ValueError(f"unknown command {name!r}; known: {', '.join(sorted(COMMANDS))}")
    data = load_payload(payload)
    if not isinstance(data, dict):
        raise ValueError("payload must be a JSON object")
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        raise ValueError("; ".join(describe_errors(exc))) from None


def execute(target: CommandTarget, cmd: Command) -> dict[str, Any]:
    """Run a validated command against the target."""
    if isinstance(cmd, CaptureCommand):
        return target.command_capture()
    if isinstance(cmd, ReloadModelCommand):
        return target.command_reload_model()
    if isinstance(cmd, ResendCommand):
        return target.command_resend(cmd.from_seq, cmd.to_seq)
    if isinstance(cmd, SetScheduleCommand):
        return target.command_set_schedule(cmd)
    if isinstance(cmd, ResetBaselineCommand):
        return target.command_reset_baseline()
    if isinstance(cmd, CaptureEmptySceneCommand):
        return target.command_capture_empty_scene()
    raise ValueError(f"no handler for {type(cmd).__name__}")


class CommandRunner:
    """Queues commands from the network thread and runs them on a worker thread."""

    def __init__(
        self,
        device_id: str,
        target: CommandTarget,
        answer: Callable[[CommandResult], None],
        supervisor: Supervisor | None = None,
    ) -> None:
        self.device_id = device_id
        self.target = target
        self.answer = answer
        self.supervisor = supervisor or Supervisor()
        self._queue: queue.Queue[tuple[str, bytes] | None] = queue.Queue(MAX_QUEUED)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the worker, restarted by the supervisor should it ever die."""
        self._thread = self.supervisor.start("commands", self._work)

    def submit(self, name: str, payload: bytes) -> None:
        """Called from the MQTT thread; never blocks it."""
        try:
            self._queue.put_nowait((name, payload))
        except queue.Full:
            log.error("command queue full; command refused", extra={"command": name})
            self.answer(self._result(name, None, ok=False, error="device busy: too many commands"))

    def stop(self) -> None:
        """Finish the current command and end the worker."""
        self.supervisor.stop()
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(30)

    def handle(self, name: str, payload: bytes) -> CommandResult:
        """Validate and run one command; always returns a result."""
        request_id = _request_id(payload)
        try:
            cmd = parse_command(name, payload)
        except (ValueError, UnicodeDecodeError) as exc:
            log.warning("invalid command", extra={"command": name, "error": str(exc)})
            return self._result(name, request_id, ok=False, error=f"invalid command: {exc}")
        try:
            detail = execute(self.target, cmd)
        except (CultivaiError, ValueError) as exc:
            return self._result(name, cmd.request_id, ok=False, error=str(exc))
        except Exception as exc:  # a bug must not kill the worker; report it instead
            log.exception("command failed", extra={"command": name})
            return self._result(name, cmd.request_id, ok=False, error=f"internal error: {exc}")
        return self._result(name, cmd.request_id, ok=True, detail=detail)

    def _result(
        self,
        name: str,
        request_id: str | None,
        *,
        ok: bool,
        error: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> CommandResult:
        return CommandResult(
            device_id=self.device_id,
            command=name[:64],
            request_id=request_id,
            ok=ok,
            error=error,
            detail=detail or {},
            at=datetime.now(timezone.utc),
        )

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            result = self.handle(*item)
            try:
                self.answer(result)
            except CultivaiError as exc:
                log.error("command result not queued", extra={"error": str(exc)})


def _request_id(payload: bytes) -> str | None:
    """The request id of a payload, when one can be read even from an invalid command."""
    try:
        data = load_payload(payload)
    except ValueError:
        return None
    value = data.get("request_id") if isinstance(data, dict) else None
    return value[:64] if isinstance(value, str) else None

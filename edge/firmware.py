"""A/B firmware updates: a new release beside the running one, a trial, confirm or roll back.

Layout under the install root (the one the Ansible role cultivai_release uses):

    releases/<version>-<sha12>/dist/<wheel>   the wheel as installed
    releases/<version>-<sha12>/venv/          its virtualenv
    releases/<version>-<sha12>/.installed     written last: the release is complete
    current  -> releases/...                  what the service runs
    previous -> releases/...                  what a rollback goes back to
    firmware-state.json                       confirmed, or on trial until a deadline

Every change is crash-safe: a symlink is replaced by renaming a new one over it, the
state file is written to a temporary name, fsynced and renamed, and each folder is
fsynced after a rename. The order (state "trial" first, naming the release to go
back to, then the symlinks) means a power cut at any point leaves `current` on a
complete release and enough written down for `firmware check` at the next boot to
finish the job: a trial that was never confirmed is rolled back.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

from edge.errors import CultivaiError

log = logging.getLogger(__name__)
DEFAULT_ROOT = Path("/opt/cultivai/edge")
STATE_FILE = "firmware-state.json"
LOCK_FILE = ".firmware.lock"
INSTALLED_MARK = ".installed"
CRASH_ENV = "CULTIVAI_FIRMWARE_CRASH_AT"  # test hook: SIGKILL ourselves at a named step
BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")
_WHEEL = re.compile(r"^cultivai_edge-(?P<version>[0-9][A-Za-z0-9.+!_]*)-[^/]+\.whl$")


class FirmwareError(CultivaiError):
    """A firmware install, confirm, rollback or check could not be done; says why."""


@dataclass
class FirmwareState:
    """What the updater last decided, as written to firmware-state.json."""

    state: str  # "confirmed", "trial" or "rolled-back"
    release: str  # the release `current` points to (or is about to)
    previous: str | None = None  # where a rollback of this trial goes
    boot_id: str | None = None  # the boot the trial started in
    deadline_monotonic: float | None = None  # CLOCK_MONOTONIC of that boot
    switched_at: str | None = None  # wall clock, for people reading the file
    deadline_at: str | None = None
    schema_before: int | None = None  # device database schema before the trial
    reason: str | None = None
    history: list[str] = field(default_factory=list)


class Layout:
    """Paths of the releases, links and state under one install root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.releases = root / "releases"
        self.current = root / "current"
        self.previous = root / "previous"
        self.state_file = root / STATE_FILE

    def release_dir(self, name: str) -> Path:
        """The folder of a release by name."""
        return self.releases / name

    def target(self, link: Path) -> str | None:
        """The release a link points to (its folder name), None when missing."""
        try:
            return Path(os.readlink(link)).name
        except OSError:
            return None

    def is_complete(self, name: str | None) -> bool:
        """A fully installed release: its mark exists and its entry point is there."""
        if not name:
            return False
        release = self.release_dir(name)
        return (release / INSTALLED_MARK).is_file() and (
            release / "venv/bin/cultivai-edge"
        ).exists()


# -- crash-safe primitives -----------------------------------------------------------


def crash_point(step: str) -> None:
    """Die like a power cut at `step` when the test hook names it."""
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def point(link: Path, release_dir: Path) -> None:
    """Make `link` point to `release_dir` in one rename (never missing, never half)."""
    tmp = link.with_name(f".tmp-{link.name}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(release_dir, tmp)
    os.replace(tmp, link)
    _fsync_dir(link.parent)


def read_state(layout: Layout) -> FirmwareState | None:
    """The state file, None when there is none; a damaged one is an error saying so."""
    try:
        raw = json.loads(layout.state_file.read_text(encoding="utf-8"))
        return FirmwareState(**raw)
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as exc:
        raise FirmwareError(f"{layout.state_file} is damaged ({exc}); fix or remove it") from exc


def write_state(layout: Layout, state: FirmwareState) -> None:
    """Write the state durably (temporary name, fsync, rename, fsync folder)."""
    state.history = [*state.history, f"{_now()} {state.state} {state.release}"][-20:]
    _write_atomic(layout.state_file, json.dumps(asdict(state), indent=2) + "\n")


@contextlib.contextmanager
def locked(layout: Layout) -> Iterator[None]:
    """One updater at a time per install root."""
    layout.root.mkdir(parents=True, exist_ok=True)
    with open(layout.root / LOCK_FILE, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise FirmwareError(f"another firmware command is running on {layout.root}") from exc
        yield


def boot_id() -> str:
    """This boot's id (a new one after every reboot); CULTIVAI_BOOT_ID overrides it."""
    override = os.environ.get("CULTIVAI_BOOT_ID")
    if override:
        return override
    try:
        return BOOT_ID_PATH.read_text().strip()
    except OSError:
        return "unknown"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# -- install -------------------------------------------------------------------------


@dataclass(frozen=True)
class InstallOptions:
    """How a release's virtualenv is made."""

    wheelhouse: Path | None = None
    python: str = "/usr/bin/python3"
    extras: tuple[str, ...] = ("edge",)
    system_site_packages: bool = False
    index_url: str | None = None


def release_name(wheel: Path) -> str:
    """`<version>-<sha12>` of a wheel, as the Ansible role names releases."""
    m = _WHEEL.match(wheel.name)
    if m is None:
        raise FirmwareError(
            f"{wheel.name}: not a cultivai_edge wheel (cultivai_edge-VERSION-...whl)"
        )
    digest = hashlib.sha256()
    with open(wheel, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return f"{m.group('version')}-{digest.hexdigest()[:12]}"


def install_release(layout: Layout, wheel: Path, options: InstallOptions) -> str:
    """Install a wheel as a release beside the others (once); returns the release name.

    Nothing the service runs is touched. A folder left by an interrupted install
    (no `.installed` mark) is removed and built again.
    """
    if not wheel.is_file():
        raise FirmwareError(f"wheel {wheel} does not exist")
    if options.wheelhouse is not None and not options.wheelhouse.is_dir():
        raise FirmwareError(f"wheelhouse {options.wheelhouse} is not a folder")
    name = release_name(wheel)
    release = layout.release_dir(name)
    if layout.is_complete(name):
        log.info("release already installed", extra={"release": name})
        return name
    if name in (layout.target(layout.current), layout.target(layout.previous)):
        raise FirmwareError(f"release {name} is in use but incomplete; run `firmware check`")
    if release.exists():
        shutil.rmtree(release)
    (release / "dist").mkdir(parents=True)
    shutil.copy2(wheel, release / "dist" / wheel.name)
    venv_cmd = [options.python, "-m", "venv"]
    if options.system_site_packages:
        venv_cmd.append("--system-site-packages")
    _run([*venv_cmd, str(release / "venv")], "create the release's virtualenv")
    crash_point("venv-created")
    pip = [str(release / "venv/bin/python"), "-m", "pip", "install", "--no-input", "--quiet"]
    pip += ["--disable-pip-version-check"]
    if options.wheelhouse is not None:
        pip += ["--no-index", "--find-links", str(options.wheelhouse)]
    elif options.index_url:
        pip += ["--index-url", options.index_url]
    extras = f"[{','.join(options.extras)}]" if options.extras else ""
    _run([*pip, f"{release / 'dist' / wheel.name}{extras}"], "install the wheel")
    crash_point("installed")
    _validate(release)
    mark = release / INSTALLED_MARK
    _write_atomic(mark, f"{wheel.name} {name}\n")
    _fsync_dir(layout.releases)
    crash_point("marked")
    log.info("release installed", extra={"release": name})
    return name


def _validate(release: Path) -> None:
    """The new entry point must at least start and say its version, before any switch."""
    entry = release / "venv/bin/cultivai-edge"
    try:
        proc = subprocess.run(
            [str(entry), "--version"], capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FirmwareError(f"release {release.name} does not start: {exc}") from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise FirmwareError(
            f"release {release.name} does not start (`cultivai-edge --version` exited "
            f"{proc.returncode}: {detail[0]}); nothing was switched"
        )


def _run(cmd: list[str], what: str) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FirmwareError(f"cannot {what}: {exc}") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise FirmwareError(f"cannot {what} (exit {proc.returncode}): {tail}")


# -- switch, confirm, roll back ------------------------------------------------------


def start_trial(
    layout: Layout, name: str, deadline_s: float, schema_before: int | None = None
) -> FirmwareState:
    """Point `current` at a complete release, on trial until `deadline_s` from now."""
    if not layout.is_complete(name):
        raise FirmwareError(f"release {name} is not completely installed")
    state = read_state(layout)
    if state is not None and state.state == "trial":
        raise FirmwareError(
            f"release {state.release} is still on trial: `firmware confirm` or "
            "`firmware rollback` first"
        )
    old = layout.target(layout.current)
    if old == name:
        raise FirmwareError(f"release {name} is already current")
    if old is not None and not layout.is_complete(old):
        old = None  # nothing sound to go back to; the trial can only be confirmed
    now = datetime.now(timezone.utc)
    trial = FirmwareState(
        state="trial",
        release=name,
        previous=old,
        boot_id=boot_id(),
        deadline_monotonic=time.monotonic() + deadline_s,
        switched_at=now.isoformat(timespec="seconds"),
        deadline_at=(now + timedelta(seconds=deadline_s)).isoformat(timespec="seconds"),
        schema_before=schema_before,
        history=state.history if state else [],
    )
    # The state names the way back before anything moves.
    write_state(layout, trial)
    crash_point("trial-written")
    if old is not None:
        point(layout.previous, layout.release_dir(old))
    crash_point("previous-linked")
    point(layout.current, layout.release_dir(name))
    crash_point("current-switched")
    log.info("switched to a release on trial", extra={"release": name, "previous": old})
    return trial


def confirm(layout: Layout) -> FirmwareState:
    """The release on trial passed its health check: keep it."""
    state = read_state(layout)
    if state is None or state.state != "trial":
        raise FirmwareError("no release is on trial")
    if layout.target(layout.current) != state.release:
        raise FirmwareError(
            f"current does not point to the release on trial ({state.release}); "
            "run `firmware check`"
        )
    state.state, state.reason = "confirmed", None
    state.deadline_monotonic = None
    write_state(layout, state)
    crash_point("confirmed")
    log.info("release confirmed", extra={"release": state.release})
    return state


def rollback(layout: Layout, reason: str, data_dir: Path | None = None) -> FirmwareState:
    """Go back to the release before: the one on trial, or else `previous`.

    When the database was migrated during the trial in a way the older release
    cannot read, the snapshot taken before the migration is restored (the agent
    must be stopped; `firmware check` runs before it at boot).
    """
    state = read_state(layout)
    current = layout.target(layout.current)
    if state is not None and state.state == "trial":
        failed: str | None = state.release
        back = state.previous
    else:
        failed, back = current, layout.target(layout.previous)
    if not layout.is_complete(back):
        raise FirmwareError(f"no complete release to roll back to (previous: {back or 'none'})")
    assert back is not None
    schema_before = state.schema_before if state is not None else None
    if data_dir is not None and schema_before is not None:
        _restore_database_if_needed(data_dir, schema_before)
    crash_point("database-checked")
    if current != back:
        point(layout.current, layout.release_dir(back))
    crash_point("rollback-current")
    if failed and failed != back and layout.release_dir(failed).is_dir():
        point(layout.previous, layout.release_dir(failed))
    done = FirmwareState(
        state="rolled-back",
        release=back,
        previous=failed,
        reason=reason,
        switched_at=_now(),
        history=state.history if state else [],
    )
    write_state(layout, done)
    log.warning("rolled back", extra={"to": back, "from": failed, "reason": reason})
    return done


def _restore_database_if_needed(data_dir: Path, schema_before: int) -> None:
    from edge import dbupgrade
    from edge.store import DB_NAME

    path = data_dir / DB_NAME
    if not path.is_file():
        return
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        version = dbupgrade.schema_version(conn)
        oldest = dbupgrade.oldest_reader(conn)
    finally:
        conn.close()
    if version <= schema_before or oldest <= schema_before:
        return  # the older release reads it as it is
    snapshot = dbupgrade.snapshot_from(path, schema_before)
    if snapshot is None:
        raise FirmwareError(
            f"the device database has schema {version}, which the release rolled back to "
            f"cannot read, and no snapshot of schema {schema_before} is left"
        )
    dbupgrade.restore_snapshot(path, snapshot)


def check(layout: Layout, data_dir: Path | None = None) -> str:
    """At boot (and from a timer): roll back a trial that rebooted or ran out of time."""
    state = read_state(layout)
    current = layout.target(layout.current)
    for leftover in layout.releases.glob("*") if layout.releases.is_dir() else []:
        in_use = leftover.name in (current, layout.target(layout.previous))
        if leftover.is_dir() and not in_use and not layout.is_complete(leftover.name):
            shutil.rmtree(leftover, ignore_errors=True)  # an install a power cut interrupted
    if state is None or state.state != "trial":
        if current is not None and not layout.is_complete(current):
            back = layout.target(layout.previous)
            if layout.is_complete(back):
                assert back is not None
                point(layout.current, layout.release_dir(back))
                return f"current was incomplete; back on {back}"
            raise FirmwareError(
                f"current release {current} is incomplete and nothing to go back to"
            )
        return f"ok: {current or 'no release'} ({state.state if state else 'no updates yet'})"
    if not layout.is_complete(state.previous):
        return f"trial: {state.release} has no release before it to roll back to"
    if state.boot_id != boot_id():
        rollback(layout, "rebooted before the release on trial was confirmed", data_dir)
        return f"rolled back to {state.previous}: {state.release} was never confirmed"
    if state.deadline_monotonic is not None and time.monotonic() > state.deadline_monotonic:
        rollback(layout, "the health check deadline passed", data_dir)
        return f"rolled back to {state.previous}: {state.release} missed its deadline"
    left = (state.deadline_monotonic or 0) - time.monotonic()
    return f"trial: {state.release}, {left:.0f} s left to pass the health check"


# -- the health check ----------------------------------------------------------------


@dataclass(frozen=True)
class HealthCheck:
    """What the new agent must show before its release is confirmed."""

    ready_file: Path  # written by the agent at READY (edge.systemd.READY_FILE)
    healthz_url: str | None = None  # the status page's /healthz, when it serves one
    settle_s: float = 20.0  # it must stay up, same process, this long after READY
    poll_s: float = 1.0


def wait_for_health(
    layout: Layout, name: str, check_: HealthCheck, deadline_s: float, since: float
) -> str | None:
    """None when the release passed within the deadline, else why not."""
    expected = (layout.release_dir(name) / "venv").resolve()
    end = time.monotonic() + deadline_s
    why: str | None = "the agent never reported ready"
    first_ok: tuple[float, int] | None = None
    while time.monotonic() < end:
        why = _health_problem(check_, expected, since)
        if why is None:
            record = json.loads(check_.ready_file.read_text(encoding="utf-8"))
            pid = int(record["pid"])
            if first_ok is None or first_ok[1] != pid:
                first_ok = (time.monotonic(), pid)
            elif time.monotonic() - first_ok[0] >= check_.settle_s:
                return None
        else:
            first_ok = None
        time.sleep(check_.poll_s)
    if why is None:
        return f"the agent did not stay up {check_.settle_s:.0f} s after reporting ready"
    return why


def _health_problem(check_: HealthCheck, expected: Path, since: float) -> str | None:
    try:
        record = json.loads(check_.ready_file.read_text(encoding="utf-8"))
        pid = int(record["pid"])
        prefix = Path(record["prefix"]).resolve()
        ready_at = datetime.fromisoformat(record["ready_at"]).timestamp()
    except (OSError, ValueError, KeyError, TypeError):
        return "the agent never reported ready"
    if prefix != expected:
        return f"the agent that reported ready runs from {prefix}, not the new release"
    if ready_at < since:
        return "the new agent has not reported ready yet"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"the agent (pid {pid}) exited after reporting ready"
    except PermissionError:
        pass  # alive, another user's
    if check_.healthz_url:
        try:
            with urllib.request.urlopen(check_.healthz_url, timeout=5) as resp:
                if resp.status != 200:
                    return f"{check_.healthz_url} answered {resp.status}"
        except (urllib.error.URLError, OSError) as exc:
            return f"{check_.healthz_url} does not answer: {exc}"
    return None


# -- the service -----------------------------------------------------------------------


class Service:
    """Starts and stops the agent: systemctl on a device, any command in a sandbox."""

    def __init__(self, command: str | None) -> None:
        # "{action}" is replaced by start, stop or restart; None: leave the service alone.
        self.command = command

    def do(self, action: str) -> None:
        """Run the action; a failure is an error naming the command."""
        if self.command is None:
            return
        argv = [a.replace("{action}", action) for a in shlex.split(self.command)]
        _run(argv, f"{action} the agent ({' '.join(argv)})")


def database_schema(data_dir: Path | None) -> int | None:
    """The device database's schema version, None without one."""
    from edge import dbupgrade
    from edge.store import DB_NAME

    if data_dir is None or not (data_dir / DB_NAME).is_file():
        return None
    conn = sqlite3.connect(f"file:{data_dir / DB_NAME}?mode=ro", uri=True)
    try:
        return dbupgrade.schema_version(conn)
    finally:
        conn.close()


def update(
    layout: Layout,
    wheel: Path,
    options: InstallOptions,
    service: Service,
    health: HealthCheck | None,
    deadline_s: float,
    data_dir: Path | None = None,
) -> FirmwareState:
    """Install, switch on trial, restart, then confirm on health or roll back by itself."""
    with locked(layout):
        name = install_release(layout, wheel, options)
        since = time.time()
        start_trial(layout, name, deadline_s, database_schema(data_dir))
        service.do("restart")
        crash_point("restarted")
        if health is None:
            return confirm(layout)
        why = wait_for_health(layout, name, health, deadline_s, since)
        if why is None:
            return confirm(layout)
        service.do("stop")
        state = rollback(layout, f"health check failed: {why}", data_dir)
        service.do("start")
        raise FirmwareError(
            f"release {name} failed its health check ({why}); back on {state.release}"
        )


def status(layout: Layout) -> dict[str, object]:
    """Releases, links and the state, for `firmware status`."""
    state = read_state(layout)
    releases = sorted(p.name for p in layout.releases.iterdir()) if layout.releases.is_dir() else []
    return {
        "root": str(layout.root),
        "current": layout.target(layout.current),
        "previous": layout.target(layout.previous),
        "state": asdict(state) if state else None,
        "releases": {r: ("installed" if layout.is_complete(r) else "incomplete") for r in releases},
    }

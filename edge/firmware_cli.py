"""`cultivai-edge firmware ...`: install, confirm, rollback, status, check."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from edge import firmware
from edge.config import DEFAULT_CONFIG_PATH, load_config
from edge.errors import CultivaiError
from edge.firmware import FirmwareError, HealthCheck, InstallOptions, Layout, Service

log = logging.getLogger("edge.firmware")
DEFAULT_SERVICE = "systemctl {action} cultivai-edge.service"
DEFAULT_DEADLINE_S = 600.0


def add_parser(sub: Any) -> None:
    """The `firmware` command and its subcommands."""
    fw = sub.add_parser(
        "firmware",
        help="install a release beside the running one, confirm it or roll back",
        description="A/B firmware updates: a new release in its own virtualenv, switched "
        "atomically, confirmed only after a health check, rolled back otherwise.",
    )
    fw.add_argument(
        "--root", type=Path, default=firmware.DEFAULT_ROOT, help="install root (releases/, current)"
    )
    fw.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG_PATH,
        help=f"agent config: its data folder and status page (default {DEFAULT_CONFIG_PATH})",
    )
    fw.add_argument(
        "--service-command",
        default=DEFAULT_SERVICE,
        help="how the agent is started/stopped; {action} is start, stop or restart "
        f"(default '{DEFAULT_SERVICE}')",
    )
    fw.add_argument("--no-service", action="store_true", help="never start or stop the agent")
    act = fw.add_subparsers(dest="action", required=True, metavar="ACTION")
    ins = act.add_parser(
        "install", help="install WHEEL, switch to it on trial, confirm or roll back"
    )
    ins.add_argument("wheel", type=Path, metavar="WHEEL")
    ins.add_argument("--wheelhouse", type=Path, help="folder of dependency wheels (no network)")
    ins.add_argument("--python", default="/usr/bin/python3", help="interpreter of the new venv")
    ins.add_argument("--system-site-packages", action="store_true", help="venv sees apt packages")
    ins.add_argument("--extras", default="edge", help="extras to install (comma separated)")
    ins.add_argument(
        "--deadline-s",
        type=float,
        default=DEFAULT_DEADLINE_S,
        help="seconds the new release has to pass its health check",
    )
    ins.add_argument(
        "--settle-s", type=float, default=20.0, help="seconds it must stay up after READY"
    )
    ins.add_argument(
        "--no-wait",
        action="store_true",
        help="switch and leave the trial running: confirm later, or `check` rolls it back",
    )
    act.add_parser("confirm", help="keep the release on trial")
    rb = act.add_parser("rollback", help="go back to the previous release")
    rb.add_argument("--reason", default="rolled back by hand", help="recorded in the state file")
    act.add_parser("status", help="releases, links and the trial, as JSON")
    ck = act.add_parser(
        "check", help="roll back a trial that rebooted or ran out of time (run at boot)"
    )
    ck.add_argument(
        "--boot", action="store_true", help="at boot, before the agent: never touch the service"
    )


def _data_dir_and_healthz(config_path: Path) -> tuple[Path | None, str | None]:
    if not config_path.is_file():
        return None, None
    config = load_config(config_path)
    url = None
    if config.web.enabled:
        host = {"0.0.0.0": "127.0.0.1", "::": "[::1]", "": "127.0.0.1"}.get(
            config.web.host, config.web.host
        )
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        url = f"http://{host}:{config.web.port}/healthz"
    return config.storage.dir, url


def run(args: argparse.Namespace) -> int:
    """Dispatch one `firmware` action; errors name what failed and what is left."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    layout = Layout(args.root)
    service = Service(None if args.no_service else args.service_command)
    try:
        data_dir, healthz = _data_dir_and_healthz(args.config)
    except CultivaiError as exc:
        print(f"warning: {args.config}: {exc}; checking without it", file=sys.stderr)
        data_dir, healthz = None, None
    if args.action == "status":
        print(json.dumps(firmware.status(layout), indent=2))
        return 0
    if args.action == "install":
        return _install(args, layout, service, data_dir, healthz)
    try:
        with firmware.locked(layout):
            if args.action == "confirm":
                state = firmware.confirm(layout)
                print(f"confirmed {state.release}")
            elif args.action == "rollback":
                service.do("stop")
                try:
                    state = firmware.rollback(layout, args.reason, data_dir)
                finally:
                    service.do("start")
                print(f"rolled back to {state.release}")
            else:
                message = firmware.check(layout, data_dir)
                if message.startswith("rolled back") and not args.boot:
                    service.do("restart")
                print(message)
    except FirmwareError as exc:
        if args.action == "check" and "another firmware command" in str(exc):
            print("an update is in progress; it checks its own trial")
            return 0
        raise
    return 0


def _install(
    args: argparse.Namespace,
    layout: Layout,
    service: Service,
    data_dir: Path | None,
    healthz: str | None,
) -> int:
    options = InstallOptions(
        wheelhouse=args.wheelhouse,
        python=args.python,
        extras=tuple(e for e in args.extras.split(",") if e),
        system_site_packages=args.system_site_packages,
    )
    if args.no_wait:
        with firmware.locked(layout):
            name = firmware.install_release(layout, args.wheel, options)
            firmware.start_trial(layout, name, args.deadline_s, firmware.database_schema(data_dir))
            service.do("restart")
        print(f"{name} on trial for {args.deadline_s:.0f} s: `firmware confirm` keeps it")
        return 0
    if data_dir is None:
        raise FirmwareError(
            f"{args.config} not found: the health check needs the agent's data folder "
            "(give --config, or --no-wait and confirm by hand)"
        )
    from edge.systemd import READY_FILE

    health = HealthCheck(data_dir / READY_FILE, healthz, settle_s=args.settle_s)
    state = firmware.update(layout, args.wheel, options, service, health, args.deadline_s, data_dir)
    print(f"{state.release} installed and confirmed")
    return 0

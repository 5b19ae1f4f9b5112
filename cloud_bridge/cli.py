"""The `cultivai-bridge` command: parse arguments, load config, call into the parts."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from cloud_bridge.config import DEFAULT_CONFIG_PATH, BridgeConfig, load_config, path_problems
from cloud_bridge.errors import BridgeError, ConfigError
from edge.logs import setup_logging

log = logging.getLogger("cloud_bridge.cli")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cultivai-bridge", description="CultivAI cloud bridge: MQTT to the fleet database."
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in (
        ("run", "run the bridge until SIGTERM"),
        ("migrate", "apply database migrations, then exit"),
        ("partitions", "create the coming weeks' partitions, drop expired ones, then exit"),
    ):
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.add_argument(
            "--config",
            type=Path,
            default=DEFAULT_CONFIG_PATH,
            help=f"config file (default {DEFAULT_CONFIG_PATH})",
        )
    cc = sub.add_parser(
        "check-config",
        help="validate a config file",
        description="Validate a config file: exit 0, or 2 naming each problem.",
    )
    cc.add_argument("file", type=Path, metavar="FILE")
    return p


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate a config file and the secret and TLS files it names."""
    problems = path_problems(load_config(args.file))
    if problems:
        raise ConfigError(problems, str(args.file))
    print(f"{args.file}: ok")
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    """Bring the database schema to this bridge's version."""
    from cloud_bridge.database import open_engine
    from cloud_bridge.schema import migrate

    config = _configure(args.config)
    engine = open_engine(config.database)
    try:
        before, after = migrate(engine)
    finally:
        engine.dispose()
    if before == after:
        print(f"database already at {after}")
    else:
        print(f"database migrated from {before or 'empty'} to {after}")
    return EXIT_OK


def cmd_partitions(args: argparse.Namespace) -> int:
    """Run partition maintenance once (a running bridge also does it hourly)."""
    from cloud_bridge.database import open_engine
    from cloud_bridge.partitions import maintain

    config = _configure(args.config)
    engine = open_engine(config.database)
    try:
        done = maintain(
            engine, config.database.partitions_ahead_weeks, config.database.retention_days
        )
    finally:
        engine.dispose()
    print(
        f"partitions created: {', '.join(done.created) or 'none'}; "
        f"dropped: {', '.join(done.dropped) or 'none'}; "
        f"rows moved from the default partition: {done.moved_from_default}; "
        f"expired rows deleted: {done.expired_rows}"
    )
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """Run the bridge until SIGTERM/SIGINT."""
    from cloud_bridge.service import Bridge

    config = _configure(args.config)
    stop = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("stop requested", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    bridge = Bridge(config).start()
    return bridge.run_until(stop)


def _configure(path: Path) -> BridgeConfig:
    config = load_config(path)
    setup_logging(config.logging.level, config.logging.format)
    return config


COMMANDS = {
    "run": cmd_run,
    "migrate": cmd_migrate,
    "partitions": cmd_partitions,
    "check-config": cmd_check_config,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of `cultivai-bridge`."""
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except BridgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())

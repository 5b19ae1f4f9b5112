"""The `cultivai-edge` command: parse arguments, load config, call into the parts."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType

from edge import __version__
from edge.config import DEFAULT_CONFIG_PATH, EdgeConfig, config_from_data, load_config
from edge.errors import ConfigError, CultivaiError
from edge.logs import native_stderr_as_log, setup_logging
from edge.protocol import Observation
from edge.store import observation_json

log = logging.getLogger("edge.cli")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cultivai-edge", description="CultivAI plant-camera agent.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(name: str, help_text: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.add_argument(
            "--config",
            type=Path,
            default=DEFAULT_CONFIG_PATH,
            help=f"config file (default {DEFAULT_CONFIG_PATH})",
        )
        return sp

    run = with_config("run", "run the agent: capture on schedule until stopped")
    run.add_argument(
        "--demo",
        action="store_true",
        help="embedded defaults: synthetic camera, data in ./demo-data, no broker; "
        "prints each observation",
    )
    run.add_argument(
        "--data-dir",
        type=Path,
        default=Path("demo-data"),
        help="data folder for --demo (default ./demo-data)",
    )
    run.add_argument("--max-captures", type=int, default=None, help="stop after N captures")
    with_config("capture", "take one photo now, store it and print the observation as JSON")
    an = sub.add_parser(
        "analyze",
        help="analyze image files; one JSON observation per line",
        description="Analyze image files; one JSON observation per line.",
    )
    an.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    an.add_argument("--config", type=Path, default=None, help="config file (optional)")
    cc = sub.add_parser(
        "check-config",
        help="validate a config file",
        description="Validate a config file: exit 0, or 2 naming each problem.",
    )
    cc.add_argument("file", type=Path, metavar="FILE")
    st = with_config("selftest", "check camera, model, storage, broker and GPIO")
    st.add_argument("--json", action="store_true", help="print the results as JSON")
    from edge.firmware_cli import add_parser as add_firmware

    add_firmware(sub)
    return p


def _load(path: Path | None) -> EdgeConfig:
    if path is None:
        return config_from_data({"device": {"id": "local"}, "storage": {"dir": "."}})
    return load_config(path)


def cmd_check_config(args: argparse.Namespace) -> int:
    """Validate a config file and every path it names; report all problems at once."""
    from edge.config_checks import check_file

    errors, warnings = check_file(args.file)
    for problem in errors:
        print(f"{args.file}: {problem}", file=sys.stderr)
    for problem in warnings:
        print(f"{args.file}: warning: {problem}", file=sys.stderr)
    if errors:
        return EXIT_USAGE
    print(f"{args.file}: ok" + (f" ({len(warnings)} warnings)" if warnings else ""))
    return EXIT_OK


def _load_for_start(path: Path) -> EdgeConfig:
    """Load a config and refuse to start on a path the agent cannot run without."""
    from edge.config_checks import startup_problems

    config = load_config(path)
    problems = startup_problems(config)
    if problems:
        raise ConfigError(problems, str(path))
    return config


def cmd_analyze(args: argparse.Namespace) -> int:
    """Analyze files; report each unreadable file and carry on with the rest."""
    from edge.observe import Observer, frame_from_file, load_model

    config = _load(args.config)
    setup_logging("WARNING", config.logging.format)
    with _native_log(config.logging.format):
        classifier, model_block = load_model(config.model)
    observer = Observer(config, classifier, model_block)
    images, failed = _expand_images(args.images)
    for index, path in enumerate(images, start=1):
        try:
            frame = frame_from_file(path, datetime.now(timezone.utc))
            measured = observer.measure(frame)
        except CultivaiError as exc:
            failed += 1
            print(f"error: {path}: {exc}", file=sys.stderr)
            continue
        # The photo came from a file, not from the configured camera backend.
        obs = observer.observation(measured, seq=index, stored=False).model_copy(
            update={"camera": "file"}
        )
        print(observation_json(obs), flush=True)
    return EXIT_FAILED if failed else EXIT_OK


def _expand_images(paths: list[Path]) -> tuple[list[Path], int]:
    """Folders become their image files in name order; an empty folder is one failure."""
    from edge.camera.replay import IMAGE_SUFFIXES

    images: list[Path] = []
    failed = 0
    for path in paths:
        if not path.is_dir():
            images.append(path)
            continue
        found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            failed += 1
            print(f"error: {path}: folder has no .jpg/.jpeg/.png images", file=sys.stderr)
        images.extend(p for p in found if p.is_file())
    return images, failed


def _native_log(fmt: str) -> AbstractContextManager[None]:
    """In JSON mode, what native code prints to fd 2 becomes log records."""
    return native_stderr_as_log() if fmt == "json" else nullcontext()


def _install_stop_handlers(stop: Callable[[], None]) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("stop requested", extra={"signal": signal.Signals(signum).name})
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def cmd_run(args: argparse.Namespace) -> int:
    """Run the agent until SIGTERM/SIGINT."""
    from edge.agent import Agent

    if args.demo:
        from edge.demo import demo_config
        from edge.web.keys import PASSWORD_FILE

        config = demo_config(args.data_dir)
        # A fresh status-page password each demo run, so it is always in the log.
        (args.data_dir / PASSWORD_FILE).unlink(missing_ok=True)
    else:
        config = _load_for_start(args.config)
    setup_logging(config.logging.level, config.logging.format)
    printer = None
    if args.demo:
        print(
            f"demo: synthetic camera, data in {args.data_dir.resolve()}, "
            f"a capture every {config.schedule.interval_s} s; Ctrl-C stops",
            file=sys.stderr,
        )
        printer = _print_observation
    from edge.systemd import READY_FILE, Notifier

    notifier = Notifier.from_environ(ready_file=config.storage.dir / READY_FILE)
    agent = Agent(config, on_observation=printer, serve_web=True, notifier=notifier)
    _install_stop_handlers(agent.stop)
    try:
        with _native_log(config.logging.format):
            agent.start()  # loads the model: LiteRT writes its delegate line to fd 2
        agent.run(max_captures=args.max_captures, capture_first=args.demo)
    finally:
        agent.close()
    return EXIT_OK


def _print_observation(obs: Observation) -> None:
    print(observation_json(obs), flush=True)


def cmd_capture(args: argparse.Namespace) -> int:
    """One capture now."""
    from edge.agent import Agent

    config = _load_for_start(args.config)
    setup_logging("WARNING", config.logging.format)
    agent = Agent(config).start()
    try:
        obs = agent.capture_once()
    finally:
        agent.close()
    if obs is None:
        print(
            f"error: capture failed: {agent.stats.last_error or 'frame too dark'}", file=sys.stderr
        )
        return EXIT_FAILED
    print(observation_json(obs))
    return EXIT_OK


def cmd_selftest(args: argparse.Namespace) -> int:
    """Check each part and say ok, skipped or why not."""
    from edge.selftest import run_selftest

    config = load_config(args.config)
    setup_logging("ERROR", config.logging.format)
    results = run_selftest(config)
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        for r in results:
            print(f"{r.part:<8} {r.state.upper():<5} {r.detail}")
    return EXIT_FAILED if any(r.state == "fail" for r in results) else EXIT_OK


def cmd_firmware(args: argparse.Namespace) -> int:
    """A/B firmware updates (edge/firmware.py)."""
    from edge.firmware_cli import run

    return run(args)


COMMANDS = {
    "run": cmd_run,
    "capture": cmd_capture,
    "analyze": cmd_analyze,
    "check-config": cmd_check_config,
    "selftest": cmd_selftest,
    "firmware": cmd_firmware,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of `cultivai-edge`."""
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"{exc.source}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except CultivaiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())

"""A private Prometheus for tests (Debian's `prometheus`): generated config, free port."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.mqtt_broker import free_port

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))


def find_tool(name: str) -> str | None:
    """Path of a Prometheus binary (prometheus, promtool), or None."""
    return shutil.which(name) or next(
        (p for p in (f"/usr/bin/{name}", f"/usr/local/bin/{name}") if Path(p).exists()), None
    )


def quick_rules(source: Path, dest: Path, hold: str = "3s") -> Path:
    """A copy of a shipped rule file whose `for:` holds are all `hold`.

    The expressions stay exactly as shipped; only the minutes an alert must hold before
    firing shrink, so a test sees it fire within seconds. promtool's unit tests
    (deploy/prometheus/tests) check the shipped holds.
    """
    text = re.sub(r"^(\s+for:) .+$", rf"\1 {hold}", source.read_text(), flags=re.M)
    dest.write_text(text)
    return dest


class Prometheus:
    """One prometheus process on 127.0.0.1 scraping `jobs` every `interval`."""

    def __init__(self, workdir: Path, jobs: list[dict[str, Any]], interval: str = "1s") -> None:
        binary = find_tool("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed (Debian package 'prometheus')")
        self.binary = binary
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        rules = [quick_rules(f, workdir / f.name) for f in RULE_FILES]
        config = {
            "global": {
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "evaluation_interval": interval,
            },
            "rule_files": [str(r) for r in rules],
            "scrape_configs": jobs,
        }
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.log_path = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Prometheus:
        """Start and wait for /-/ready."""
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--web.enable-lifecycle",
                    "--storage.tsdb.retention.time=1h",
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus not ready within {timeout} s: {self.log()}")

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the `data` of a successful answer."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"]
        return result

    def alerts(self, name: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        """Active alerts from /api/v1/alerts, filtered by name and state."""
        found: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return [
            a
            for a in found
            if (name is None or a["labels"]["alertname"] == name)
            and (state is None or a["state"] == state)
        ]

    def wait_for(self, what: str, check: Any, timeout: float = 60.0) -> Any:
        """Poll `check()` until it returns something truthy; fail naming `what`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.5)
        raise AssertionError(f"{what} not seen within {timeout} s\n{self.log()[-2000:]}")

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        """Prometheus's log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

"""The bridge image run as a container on the host network, against test services."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import yaml

from tests.containers.dockerd import PrivateDockerd
from tests.mqtt_broker import free_port

# Like a production pod: read-only root, a small tmpfs for /tmp, no capabilities, no
# privilege gain, host networking only (the test daemon has no bridge network).
HARDENING = (
    "--network=host",
    "--read-only",
    "--tmpfs=/tmp:size=16m,mode=1777",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
)


def bridge_settings(broker_port: int, database_url: str, client_id: str) -> dict[str, Any]:
    """The config file a test mounts at /etc/cultivai/bridge.yaml."""
    return {
        "mqtt": {
            "host": "127.0.0.1",
            "port": broker_port,
            "client_id": client_id,
            "reconnect_max_s": 0.5,
        },
        "database": {"url": database_url, "retry_max_s": 0.5, "connect_timeout_s": 2},
        "batching": {"max_messages": 200, "max_seconds": 0.1},
        "gaps": {"enabled": False},
        "logging": {"format": "json", "level": "INFO"},
    }


class BridgeContainer:
    """One `cultivai-bridge` container; its HTTP port is a free one on 127.0.0.1."""

    def __init__(
        self, docker: PrivateDockerd, image: str, workdir: Path, settings: dict[str, Any]
    ) -> None:
        self.docker = docker
        self.image = image
        self.name = f"cultivai-test-bridge-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / f"{self.name}.yaml"
        self.config_path.write_text(yaml.safe_dump(settings))
        self.config_path.chmod(0o644)
        self.started_at = 0.0

    def args(self, *command: str) -> list[str]:
        """`docker run` arguments (without -d/--rm) for this bridge running `command`."""
        return [
            *HARDENING,
            f"--name={self.name}",
            f"--volume={self.config_path}:/etc/cultivai/bridge.yaml:ro",
            # The image listens on 0.0.0.0:8090; on the host network keep it on loopback.
            "--env=CULTIVAI_BRIDGE__HTTP__HOST=127.0.0.1",
            f"--env=CULTIVAI_BRIDGE__HTTP__PORT={self.port}",
            "--health-interval=1s",
            "--health-start-period=1s",
            self.image,
            *command,
        ]

    def start(self, timeout: float = 60.0) -> float:
        """Start `run` detached; wait for /readyz 200; return the seconds that took."""
        self.started_at = time.monotonic()
        self.docker.docker("run", "--detach", *self.args("run"))
        deadline = self.started_at + timeout
        while time.monotonic() < deadline:
            if self.state()["Status"] == "exited":
                raise AssertionError(f"bridge container exited:\n{self.logs()}")
            if self.http_status("/readyz") == 200:
                return time.monotonic() - self.started_at
            time.sleep(0.1)
        raise AssertionError(f"bridge not ready within {timeout} s:\n{self.logs()}")

    def http_status(self, path: str) -> int:
        """HTTP status of GET path on the bridge, 0 if it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (urllib.error.URLError, OSError):
            return 0

    def state(self) -> dict[str, Any]:
        """`docker inspect`'s State of the container."""
        out = self.docker.docker("inspect", "--format", "{{json .State}}", self.name).stdout
        return dict(json.loads(out))

    def exec(self, *command: str) -> Any:
        """Run a command inside the running container (not checked)."""
        return self.docker.docker("exec", self.name, *command, check=False)

    def logs(self) -> str:
        """stdout and stderr of the container."""
        done = self.docker.docker("logs", self.name, check=False)
        return (done.stdout + done.stderr)[-6000:]

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines."""
        records = []
        for line in self.docker.docker("logs", self.name, check=False).stderr.splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def remove(self) -> None:
        """Remove the container whatever its state."""
        self.docker.docker("rm", "--force", self.name, check=False)

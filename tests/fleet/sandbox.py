"""A fleet on this machine: an inventory of local hosts in one folder, and the playbooks run on it.

Every host is `ansible_connection: local` with its own path prefix, so two plant
cameras, a broker, a bridge and a database share this machine without sharing a
file. No systemd here: the inventory turns service, package and user management
off, and the tests start what the units would start.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
DEVICES = ("dev-a", "dev-b")
SECRETS = {
    "vault_mqtt_password_seed": "fleet-test-seed",
    "vault_mqtt_device_passwords": {},
    "vault_mqtt_bridge_password": "fleet-test-bridge",
    "vault_bridge_db_password": "fleet-test-db",
    "vault_bridge_api_token": "fleet-test-token",
    "vault_edge_web_password_hash": "",
}
# The example inventory's group_vars/all/main.yml derives device passwords like this.
PASSWORD_RULE = (
    "{{ vault_mqtt_device_passwords[edge_device_id] | default((vault_mqtt_password_seed"
    " ~ ':' ~ edge_device_id) | hash('sha256')) }}"
)
# Every playbook run of this session, for the timing summary (conftest.py).
RUNS: list[PlaybookRun] = []
RECAP_LINE = re.compile(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def device_password(device_id: str) -> str:
    """The MQTT password the inventory derives for a device."""
    seed = SECRETS["vault_mqtt_password_seed"]
    return hashlib.sha256(f"{seed}:{device_id}".encode()).hexdigest()


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def make_pki(folder: Path) -> dict[str, Path]:
    """A CA and a broker certificate for 127.0.0.1/localhost, made with openssl."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = folder / "ca.key", folder / "ca.crt"
    key, csr, crt = folder / "broker.key", folder / "broker.csr", folder / "broker.crt"
    ext = folder / "broker.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def openssl(*args: str | Path) -> None:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=fleet test CA",
        "-keyout",
        ca_key,
        "-out",
        ca_crt,
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        key,
        "-out",
        csr,
    )
    openssl(
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        ca_crt,
        "-CAkey",
        ca_key,
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        ext,
        "-out",
        crt,
    )
    return {"ca": ca_crt, "cert": crt, "key": key}


def build_wheel(out: Path) -> Path:
    """The project's wheel, built like `make dist` builds it (PEP 517, hatchling)."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("cultivai_edge-*.whl")
    return wheel


def build_wheelhouse(wheel: Path, out: Path) -> Path:
    """A .tar of every dependency of the edge and bridge extras (pip's cache serves most)."""
    folder = out / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--only-binary=:all:",
            "--dest",
            str(folder),
            f"{wheel}[edge,bridge]",
        ],
        check=True,
        capture_output=True,
    )
    (folder / wheel.name).unlink(missing_ok=True)  # the wheel itself is pushed on its own
    archive = out / "wheelhouse.tar"
    with tarfile.open(archive, "w") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=path.name)
    shutil.rmtree(folder)
    return archive


def rebuilt_wheel(wheel: Path, out: Path, replace: dict[str, bytes] | None = None) -> Path:
    """The same wheel with other zip timestamps (a new release), optionally a file replaced."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / wheel.name
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = (replace or {}).get(info.filename, src.read(info.filename))
            stamped = zipfile.ZipInfo(info.filename, date_time=(2030, 1, 1, 0, 0, 0))
            stamped.external_attr = info.external_attr
            dst.writestr(stamped, data, zipfile.ZIP_DEFLATED)
    return target


@dataclass
class PlaybookRun:
    """One ansible-playbook run: exit code, output and the PLAY RECAP per host."""

    label: str
    args: list[str]
    returncode: int
    output: str
    seconds: float
    recap: dict[str, dict[str, int]] = field(default_factory=dict)

    def total(self, key: str) -> int:
        """Sum of one recap counter (ok, changed, failed, ...) over all hosts."""
        return sum(host.get(key, 0) for host in self.recap.values())

    def explain(self) -> str:
        """The output's tail, for assertion messages."""
        return f"ansible-playbook {self.label} -> {self.returncode}\n{self.output[-6000:]}"


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    """{host: {ok: .., changed: .., failed: .., ...}} from the PLAY RECAP block."""
    recap: dict[str, dict[str, int]] = {}
    if "PLAY RECAP" not in output:
        return recap
    for line in output.split("PLAY RECAP", 1)[1].splitlines():
        match = RECAP_LINE.match(line.strip())
        if match:
            counters = dict(pair.split("=") for pair in match.group(2).split())
            recap[match.group(1)] = {k: int(v) for k, v in counters.items()}
    return recap


@dataclass
class Host:
    """One sandboxed host: its name and path prefix."""

    name: str
    prefix: Path
    vars: dict[str, Any]


class Sandbox:
    """The inventory, the hosts' folders and the processes the tests start in them."""

    def __init__(self, root: Path, ansible_bin: Path, wheel: Path, wheelhouse: Path) -> None:
        self.root = root
        self.ansible_bin = ansible_bin
        self.wheel = wheel
        self.pki = make_pki(root / "pki")
        self.inventory = root / "inventory"
        self.log_dir = root / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.process_logs: list[IO[bytes]] = []
        self.site_runs: list[PlaybookRun] = []
        self.broker_port = free_port()
        self.pg_port = 0
        base_python = getattr(sys, "_base_executable", sys.executable)
        self.common: dict[str, Any] = {
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "ansible_become": False,
            "cultivai_manage_packages": False,
            "cultivai_manage_users": False,
            "cultivai_manage_services": False,
            "cultivai_mqtt_host": "127.0.0.1",
            "cultivai_tls_ca_src": str(self.pki["ca"]),
            "cultivai_wheel": str(wheel),
            "cultivai_wheelhouse": str(wheelhouse),
            # Python compiles on first import instead: the test's installs take a third
            # of the time. Devices keep pip's default (their code is read-only there).
            "edge_device_pip_args": ["--no-compile"],
            "cloud_bridge_pip_args": ["--no-compile"],
            "edge_device_python": base_python,
            "cloud_bridge_python": base_python,
            "edge_device_mqtt_password": PASSWORD_RULE,
            "edge_device_web_password_hash": "{{ vault_edge_web_password_hash }}",
            "mqtt_broker_bridge_password": "{{ vault_mqtt_bridge_password }}",
            "cloud_bridge_mqtt_password": "{{ vault_mqtt_bridge_password }}",
            "cloud_bridge_db_password": "{{ vault_bridge_db_password }}",
            "cloud_bridge_api_token": "{{ vault_bridge_api_token }}",
            "postgres_bridge_password": "{{ vault_bridge_db_password }}",
            **SECRETS,
        }
        self.devices = {
            name: Host(
                name,
                root / "hosts" / name,
                {
                    "edge_device_id": name,
                    "edge_device_user": "root",
                    "edge_device_groups": [],
                    "edge_device_system_site_packages": False,
                    "edge_device_camera": {"backend": "synthetic", "width": 640, "height": 480},
                    "edge_device_schedule": {"interval_s": 3600},
                    "edge_device_mqtt_port": self.broker_port,
                    "edge_device_web_host": "127.0.0.1",
                    "edge_device_web_port": free_port(),
                    "edge_device_health_retries": 20,
                    "edge_device_health_delay": 1,
                    "edge_device_config_overrides": {
                        "storage": {"min_free_mb": 0},
                        "mqtt": {"reconnect_max_s": 2.0},
                    },
                },
            )
            for name in DEVICES
        }
        self.broker = Host(
            "broker",
            root / "hosts" / "broker",
            {
                "mqtt_broker_port": self.broker_port,
                "mqtt_broker_bind_address": "127.0.0.1",
                "mqtt_broker_local_port": 0,
                # The bridge may send only resend commands; an operator sends captures.
                "mqtt_broker_extra_users": [
                    {
                        "user": "fleet-operator",
                        "password": "fleet-operator-pw",
                        "acl": ["topic write cultivai/v1/+/cmd/capture"],
                    }
                ],
                "mqtt_broker_run_user": "root" if os.geteuid() == 0 else "",
                "mqtt_broker_tls_cert_src": str(self.pki["cert"]),
                "mqtt_broker_tls_key_src": str(self.pki["key"]),
            },
        )
        self.bridge = Host(
            "bridge",
            root / "hosts" / "bridge",
            {
                "cloud_bridge_user": "root",
                "cloud_bridge_mqtt_port": self.broker_port,
                "cloud_bridge_db_host": "127.0.0.1",
                "cloud_bridge_http_port": free_port(),
            },
        )
        self.db = Host("db", root / "hosts" / "db", {"postgres_manage_server": False})

    # -- inventory ---------------------------------------------------------------

    def use_database(self, port: int) -> None:
        """Point the postgres role and the bridge at a running PostgreSQL server."""
        self.pg_port = port
        self.db.vars.update(postgres_admin_host="127.0.0.1", postgres_admin_port=port)
        self.bridge.vars["cloud_bridge_db_port"] = port

    def write_inventory(self) -> Path:
        """Write hosts.yml for the whole sandbox."""

        def entry(host: Host) -> dict[str, Any]:
            return {"cultivai_prefix": str(host.prefix), **host.vars}

        inventory = {
            "all": {
                "vars": self.common,
                "children": {
                    "edge_devices": {"hosts": {h.name: entry(h) for h in self.devices.values()}},
                    "mqtt_brokers": {"hosts": {"broker": entry(self.broker)}},
                    "cloud_bridges": {"hosts": {"bridge": entry(self.bridge)}},
                    "postgres_servers": {"hosts": {"db": entry(self.db)}},
                },
            }
        }
        self.inventory.mkdir(parents=True, exist_ok=True)
        path = self.inventory / "hosts.yml"
        path.write_text(yaml.safe_dump(inventory, sort_keys=False))
        return path

    # -- running playbooks ---------------------------------------------------------

    def playbook(self, name: str, *extra: str, timeout: float = 600) -> PlaybookRun:
        """Run one of ansible/'s playbooks on the sandbox inventory."""
        inventory = self.write_inventory()
        args = [name, "-i", str(inventory), *extra]
        env = {
            **os.environ,
            "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCAL_TEMP": str(self.root / "ansible-tmp"),
            "ANSIBLE_REMOTE_TEMP": str(self.root / "ansible-tmp"),
            "PATH": f"{self.ansible_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        started = time.monotonic()
        proc = subprocess.run(
            [str(self.ansible_bin / "ansible-playbook"), *args],
            cwd=ANSIBLE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        output = proc.stdout + proc.stderr
        seconds = time.monotonic() - started
        log = self.log_dir / f"{len(list(self.log_dir.iterdir())):02d}-{Path(name).stem}.log"
        log.write_text(output)
        label = " ".join([name, *extra]).replace(str(self.root), "<sandbox>")
        run = PlaybookRun(label, args, proc.returncode, output, seconds, parse_recap(proc.stdout))
        RUNS.append(run)
        return run

    # -- what the hosts have installed ---------------------------------------------

    def device_path(self, name: str, *parts: str) -> Path:
        """A path in a device's sandbox."""
        return self.devices[name].prefix.joinpath(*parts)

    def edge_cli(self, name: str) -> Path:
        """The installed cultivai-edge of a device (through `current`)."""
        return self.device_path(name, "opt/cultivai/edge/current/venv/bin/cultivai-edge")

    def edge_config(self, name: str) -> Path:
        """The device's rendered edge.yaml."""
        return self.device_path(name, "etc/cultivai/edge.yaml")

    def release(self, name: str) -> str:
        """The release `current` points to on a device."""
        return os.readlink(self.device_path(name, "opt/cultivai/edge/current"))

    def run_edge(
        self, name: str, *args: str, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the device's installed cultivai-edge with its config."""
        return subprocess.run(
            [str(self.edge_cli(name)), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def selftest(self, name: str) -> dict[str, dict[str, str]]:
        """The device's selftest, part -> {state, detail}."""
        proc = self.run_edge(name, "selftest", "--json", "--config", str(self.edge_config(name)))
        return {r["part"]: r for r in json.loads(proc.stdout)}

    def model_version(self, name: str) -> dict[str, Any]:
        """The `model` block `cultivai-edge analyze` reports on the reference photo."""
        photo = ANSIBLE_DIR / "roles/edge_device/files/reference-canopy.jpg"
        proc = self.run_edge(name, "analyze", "--config", str(self.edge_config(name)), str(photo))
        assert proc.returncode == 0, proc.stderr
        model: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])["model"]
        return model

    # -- processes the units would start -------------------------------------------

    def start(self, key: str, argv: list[str], port: int, timeout: float = 60) -> None:
        """Start a long-running process and wait for its port."""
        log = (self.log_dir / f"{key}.log").open("ab")
        self.process_logs.append(log)
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self.processes[key] = proc
        try:
            wait_for_port(port, timeout, proc)
        except (RuntimeError, TimeoutError) as exc:
            raise RuntimeError(f"{key}: {exc}\n{self.process_log(key)}") from None

    def start_broker(self) -> None:
        """Mosquitto with the config the mqtt_broker role rendered."""
        conf = self.broker.prefix / "etc/mosquitto/mosquitto.conf"
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.start("broker", [mosquitto, "-c", str(conf)], self.broker_port)

    def start_agent(self, name: str) -> None:
        """The agent as its unit would run it: installed venv, rendered config."""
        port = self.devices[name].vars["edge_device_web_port"]
        argv = [str(self.edge_cli(name)), "run", "--config", str(self.edge_config(name))]
        self.start(name, argv, port, timeout=90)
        self.wait_healthy(name)

    def start_bridge(self) -> None:
        """The cloud bridge as its unit would run it."""
        prefix = self.bridge.prefix
        cli = prefix / "opt/cultivai/bridge/current/venv/bin/cultivai-bridge"
        argv = [str(cli), "run", "--config", str(prefix / "etc/cultivai/bridge.yaml")]
        self.start("bridge", argv, self.bridge.vars["cloud_bridge_http_port"])

    def healthz(self, name: str) -> dict[str, Any]:
        """GET /healthz of a device's agent."""
        port = self.devices[name].vars["edge_device_web_port"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
            assert resp.status == 200
            body: dict[str, Any] = json.loads(resp.read())
            return body

    def wait_healthy(self, name: str, timeout: float = 30) -> None:
        """Poll /healthz until it answers."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.healthz(name)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise

    def process_log(self, key: str) -> str:
        """What a started process wrote."""
        path = self.log_dir / f"{key}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop_all(self) -> None:
        """SIGTERM every started process, then SIGKILL what is left."""
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.processes.clear()
        for log in self.process_logs:
            log.close()
        self.process_logs.clear()

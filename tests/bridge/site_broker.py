"""Mosquitto configured by the Ansible mqtt_broker role's own templates, and a TCP link
that a test can cut, standing for a site's WAN connection."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import sys
import threading
import types
from pathlib import Path
from typing import Any

import jinja2
import yaml

from tests.mqtt_broker import Broker

ROLE = Path(__file__).resolve().parents[2] / "ansible" / "roles" / "mqtt_broker"


def _ansible_bool(value: Any) -> bool:
    """Ansible's `bool` filter."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("yes", "on", "1", "true", "y")


def _password_filter() -> Any:
    """The role's own `mosquitto_password` filter (ansible.errors stubbed when Ansible
    lives only in the fleet venv)."""
    if "ansible.errors" not in sys.modules:
        try:
            import ansible.errors  # noqa: F401
        except ImportError:
            stub = types.ModuleType("ansible.errors")
            stub.AnsibleFilterError = ValueError  # type: ignore[attr-defined]
            sys.modules.setdefault("ansible", types.ModuleType("ansible"))
            sys.modules["ansible.errors"] = stub
    spec = importlib.util.spec_from_file_location(
        "mosquitto_filters", ROLE / "filter_plugins" / "mosquitto.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.mosquitto_password


def render_role(
    variables: dict[str, Any], devices: dict[str, str], inventory_hostname: str
) -> dict[str, str]:
    """The role's mosquitto.conf, cultivai.acl and cultivai.passwd for these variables.

    The role's defaults are read from defaults/main.yml and resolved like Ansible's
    lazy variables; `devices` maps device ids to passwords, standing for the inventory.
    """
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(ROLE / "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
    )
    env.filters["bool"] = _ansible_bool
    env.filters["mosquitto_password"] = _password_filter()
    hosts = {
        f"host-{d}": {"edge_device_id": d, "edge_device_mqtt_password": p}
        for d, p in devices.items()
    }
    context: dict[str, Any] = {
        **yaml.safe_load((ROLE / "defaults" / "main.yml").read_text()),
        **variables,
        "groups": {"edge_devices": list(hosts)},
        "hostvars": hosts,
        "inventory_hostname": inventory_hostname,
    }
    for _ in range(5):  # variables naming variables, as Ansible resolves them lazily
        for key, value in list(context.items()):
            if isinstance(value, str) and "{{" in value:
                context[key] = env.from_string(value).render(context)
    return {
        name: env.get_template(f"{name}.j2").render(context)
        for name in ("mosquitto.conf", "cultivai.acl", "cultivai.passwd")
    }


class RoleBroker(Broker):
    """Mosquitto running the configuration the mqtt_broker role renders, on a test port.

    `variables` are the role variables of this broker (TLS off, loopback listener and
    this test's folders are filled in); `devices` its device credentials.
    """

    def __init__(
        self,
        workdir: Path,
        name: str,
        devices: dict[str, str],
        bridge_password: str,
        **variables: Any,
    ) -> None:
        super().__init__(workdir)
        self.name = name
        self.devices = devices
        self.variables = {
            "mqtt_broker_tls": False,
            "mqtt_broker_port": self.port,
            "mqtt_broker_bind_address": "127.0.0.1",
            "mqtt_broker_local_port": 0,
            "mqtt_broker_bridge_password": bridge_password,
            "mqtt_broker_run_user": "root" if os.geteuid() == 0 else "",
            "mqtt_broker_conf_dir": str(workdir),
            "mqtt_broker_data_dir": str(workdir),
            "mqtt_broker_log_dir": str(workdir),
            "mqtt_broker_autosave_interval": 1,
            **variables,
        }
        self.rendered: dict[str, str] = {}

    def write_config(self) -> None:
        """Render the role's templates into this broker's folder."""
        self.rendered = render_role(self.variables, self.devices, self.name)
        for name, content in self.rendered.items():
            (self.workdir / name).write_text(content)
        (self.workdir / "cultivai.passwd").chmod(0o600)
        self.config_path = self.workdir / "mosquitto.conf"


class Link:
    """A TCP forwarder on 127.0.0.1 to `target`; `cut()` drops every connection and
    refuses new ones (a WAN outage), `restore()` accepts again on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        self.port = int(listener.getsockname()[1])
        listener.close()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.connections = 0
        self.restore()

    def restore(self) -> None:
        """Listen again and forward."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Close the listener and every open connection."""
        with self._lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
                self.connections += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

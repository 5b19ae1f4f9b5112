"""First boot of the appliance: provision the device from `cultivai.yaml` on the boot partition.

The grower writes `cultivai.yaml` (device, broker, Wi-Fi, SSH keys, page password) on
the SD card's FAT partition. At boot, while that file is there, this step:

1. validates it (its own pydantic model, then the edge config it makes, with the same
   checks as `cultivai-edge check-config`);
2. writes the secrets (broker password, page password, Wi-Fi) into 0600 files and
   `/etc/cultivai/edge.yaml` pointing at them, each file written to a temporary name,
   fsynced and renamed;
3. sets the hostname and installs the SSH public keys;
4. leaves a copy without secrets on the boot partition and deletes the original.

Everything is derived from the file again on each run and the file is deleted last, so
a power cut anywhere completes on the next boot with the same result. A bad file never
stops the boot: the problems go to the journal and to a small page on the status-page
port (`cultivai-firstboot status-page`) until a fixed file is put in place.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import http.server
import json
import logging
import os
import re
import socket
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from edge import yaml_config
from edge.errors import ConfigError

log = logging.getLogger(__name__)

PROVISION_NAME = "cultivai.yaml"
APPLIED_NAME = "cultivai-applied.yaml"
REMOVED = "(removed from the boot partition: kept on the device)"
_HOSTNAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_SSH_KEY = re.compile(
    r"(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp(256|384|521)|sk-(ssh-ed25519|ecdsa-sha2-nistp256)"
    r"@openssh\.com) [A-Za-z0-9+/=]+( [^\n]*)?"
)


class ProvisionSection(BaseModel):
    """Base of the sections of cultivai.yaml: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ProvisionDevice(ProvisionSection):
    """Who the device is."""

    id: str | None = Field(
        None,
        description="Device id (MQTT user and topic level); null: derived from the board "
        "serial number or the machine id, e.g. 'cultivai-3f2a9c81d0e4'.",
    )
    site: str = Field("default", max_length=64, description="Site (farm or building) name.")
    room: str = Field("default", max_length=64, description="Grow room the camera looks into.")
    hostname: str | None = Field(
        None, description="Host name; null: the device id in lower case, '_' and '.' as '-'."
    )

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str | None) -> str | None:
        if value is not None and not _HOSTNAME.fullmatch(value):
            raise ValueError(
                "must be 1-63 lower-case letters, digits or '-', not starting with '-'"
            )
        return value


class ProvisionBroker(ProvisionSection):
    """The MQTT broker the device publishes to."""

    host: str = Field(min_length=1, description="Broker host name or address.")
    port: int | None = Field(
        None, ge=1, le=65535, description="Broker port; null: 8883 with a CA, else 1883."
    )
    username: str | None = Field(None, description="Broker user name; null: the device id.")
    password: SecretStr | None = Field(
        None, description="Broker password (secret: moved to a 0600 file on the device)."
    )
    ca: str | None = Field(
        None, description="PEM text of the CA that signed the broker's certificate; turns TLS on."
    )

    @field_validator("ca")
    @classmethod
    def _pem(cls, value: str | None) -> str | None:
        if value is not None and "-----BEGIN CERTIFICATE-----" not in value:
            raise ValueError("must be PEM text starting with -----BEGIN CERTIFICATE-----")
        return value


class ProvisionWifi(ProvisionSection):
    """A Wi-Fi network to join (leave out for Ethernet)."""

    ssid: str = Field(min_length=1, max_length=32, description="Network name.")
    psk: SecretStr | None = Field(
        None, description="WPA passphrase, 8-63 characters (secret); null: an open network."
    )
    country: str = Field(
        description="Two-letter country code for the radio rules (e.g. 'NL', 'US')."
    )
    hidden: bool = Field(False, description="The network does not broadcast its name.")

    @field_validator("psk")
    @classmethod
    def _psk_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not 8 <= len(value.get_secret_value()) <= 63:
            raise ValueError("a WPA passphrase has 8 to 63 characters")
        return value

    @field_validator("country")
    @classmethod
    def _country(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z]{2}", value):
            raise ValueError("must be a two-letter country code such as 'NL' or 'US'")
        return value.upper()


class ProvisionSsh(ProvisionSection):
    """Remote access for the fleet admin: public keys only, never a password."""

    authorized_keys: list[str] = Field(
        default_factory=list,
        description="SSH public keys allowed to log in as root (one 'ssh-ed25519 AAAA...' each).",
    )

    @field_validator("authorized_keys")
    @classmethod
    def _keys(cls, value: list[str]) -> list[str]:
        for i, key in enumerate(value):
            if not _SSH_KEY.fullmatch(key.strip()):
                raise ValueError(
                    f"entry {i} is not an SSH public key line ('ssh-ed25519 AAAA... comment')"
                )
        return [k.strip() for k in value]


class ProvisionWeb(ProvisionSection):
    """The status page."""

    password: SecretStr | None = Field(
        None,
        description="Page password (secret, at least 8 characters); null: one is generated, "
        "shown on the console and kept in /etc/cultivai/secrets/page-password.",
    )

    @field_validator("password")
    @classmethod
    def _length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 8:
            raise ValueError("must have at least 8 characters")
        return value


class ProvisionConfig(ProvisionSection):
    """cultivai.yaml: what first boot needs to turn a fresh SD card into this device."""

    device: ProvisionDevice = Field(
        default_factory=ProvisionDevice, description="Identity of the device."
    )
    broker: ProvisionBroker | None = Field(
        None, description="Broker; null: keep results on device."
    )
    wifi: ProvisionWifi | None = Field(None, description="Wi-Fi network; null: Ethernet only.")
    ssh: ProvisionSsh = Field(default_factory=ProvisionSsh, description="SSH access.")
    web: ProvisionWeb = Field(default_factory=ProvisionWeb, description="Status page.")
    edge: dict[str, Any] = Field(
        default_factory=dict,
        description="More sections of edge.yaml (camera, schedule, model, ...), merged over "
        "what first boot writes; see the edge config reference.",
    )

    @model_validator(mode="after")
    def _edge_sections(self) -> ProvisionConfig:
        owned = sorted({"device"} & set(self.edge))
        if owned:
            raise ValueError(
                "edge.device is set from the top-level 'device' section; move it there"
            )
        return self


@dataclass(frozen=True)
class Paths:
    """Where first boot reads and writes; a test points them all into a temporary folder."""

    boot: Path = Path("/boot/firmware")
    etc: Path = Path("/etc/cultivai")
    state: Path = Path("/var/lib/cultivai/firstboot")
    data: Path = Path("/var/lib/cultivai")
    root_ssh: Path = Path("/root/.ssh")
    hostname: Path = Path("/etc/hostname")
    hosts: Path = Path("/etc/hosts")
    machine_id: Path = Path("/etc/machine-id")
    serials: tuple[Path, ...] = (
        Path("/proc/device-tree/serial-number"),
        Path("/sys/firmware/devicetree/base/serial-number"),
    )
    wpa_supplicant: Path = Path("/etc/wpa_supplicant")
    network_manager: Path = Path("/etc/NetworkManager/system-connections")
    model_dir: Path | None = None

    @property
    def provision_file(self) -> Path:
        return self.boot / PROVISION_NAME

    @property
    def secrets(self) -> Path:
        return self.etc / "secrets"

    @property
    def problems_file(self) -> Path:
        return self.state / "problems.json"


@dataclass
class System:
    """What first boot does to the running system, apart from files (a test records it)."""

    owner: str | None = "cultivai"
    set_hostname: Callable[[str], None] = socket.sethostname
    enable_wifi: Callable[[str], None] = lambda iface: None
    actions: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Outcome:
    """What a run did: 'provisioned', 'unchanged' (nothing to do) or 'problems'."""

    status: str
    device_id: str | None = None
    problems: tuple[str, ...] = ()
    generated_password: str | None = None


def durable_write(path: Path, data: bytes, mode: int = 0o644, owner: str | None = None) -> None:
    """Write to a temporary name, fsync, set mode and owner, rename, fsync the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            if owner is not None:
                uid, gid = _ids(owner)
                os.fchown(f.fileno(), uid, gid)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename or unlink in `folder` durable (a no-op where folders cannot be fsynced)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _ids(owner: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(owner)
    return entry.pw_uid, entry.pw_gid


def owner_or_none(owner: str | None) -> str | None:
    """`owner` if that user exists here, else None (files stay root's)."""
    if owner is None:
        return None
    try:
        _ids(owner)
    except KeyError:
        return None
    return owner


def read_provision(path: Path) -> ProvisionConfig:
    """Parse and validate cultivai.yaml; raises ConfigError naming every problem."""
    data = yaml_config.read_yaml(path, ConfigError)
    return yaml_config.validate(
        ProvisionConfig,
        data,
        env={},
        prefix="CULTIVAI_PROVISION__",
        source=str(path),
        error=ConfigError,
    )


def derive_device_id(paths: Paths) -> str:
    """A stable id from the board serial (Raspberry Pi, Jetson) or else the machine id.

    The machine id is hashed, never shown: systemd asks that it not leave the device.
    """
    for p in paths.serials:
        try:
            serial = p.read_bytes().rstrip(b"\0\n ").decode("ascii", "replace").lower()
        except OSError:
            continue
        serial = re.sub(r"[^0-9a-z]", "", serial)
        if serial.strip("0"):
            return f"cultivai-{serial[-12:]}"
    try:
        machine = paths.machine_id.read_text().strip()
    except OSError:
        machine = ""
    if not re.fullmatch(r"[0-9a-f]{32}", machine):
        raise ConfigError(
            ["device.id: not given, and neither a board serial nor /etc/machine-id is available"],
            "first boot",
        )
    digest = hashlib.sha256(f"cultivai-device:{machine}".encode()).hexdigest()
    return f"cultivai-{digest[:12]}"


def hostname_for(device_id: str) -> str:
    """The device id as a host name: lower case, '_' and '.' become '-', at most 63 chars."""
    name = re.sub(r"[^a-z0-9-]", "-", device_id.lower()).strip("-")[:63].rstrip("-")
    return name or "cultivai"


def deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` merged into a copy of `base`, mappings recursively."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def edge_config_data(
    prov: ProvisionConfig, device_id: str, paths: Paths, password_hash: str
) -> dict[str, Any]:
    """The edge.yaml this provisioning file makes (secrets only by file name)."""
    data: dict[str, Any] = {
        "device": {"id": device_id, "site": prov.device.site, "room": prov.device.room},
        "storage": {"dir": str(paths.data)},
        "web": {"password_hash": password_hash},
    }
    if paths.model_dir is not None:
        data["model"] = {"dir": str(paths.model_dir)}
    if prov.broker is not None:
        b = prov.broker
        mqtt: dict[str, Any] = {
            "enabled": True,
            "host": b.host,
            "port": b.port or (8883 if b.ca else 1883),
            "username": b.username or device_id,
        }
        if b.password is not None:
            mqtt["password_file"] = str(paths.secrets / "mqtt-password")
        if b.ca is not None:
            mqtt["tls"] = {"ca_file": str(paths.etc / "broker-ca.pem")}
        data["mqtt"] = mqtt
    return deep_merge(data, prov.edge)


def sanitized(raw: object) -> object:
    """The provisioning data with every secret replaced by a note saying where it went."""
    if not isinstance(raw, dict):
        return raw
    out = json.loads(json.dumps(raw, default=str))
    for section, key in (("broker", "password"), ("wifi", "psk"), ("web", "password")):
        part = out.get(section)
        if isinstance(part, dict) and part.get(key) is not None:
            part[key] = REMOVED
    return out


def _wpa_conf(wifi: ProvisionWifi) -> str:
    def quoted(s: str) -> str:
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = [
        "ctrl_interface=DIR=/run/wpa_supplicant GROUP=netdev",
        "update_config=0",
        f"country={wifi.country}",
        "network={",
        f"  ssid={quoted(wifi.ssid)}",
    ]
    if wifi.psk is not None:
        lines.append(f"  psk={quoted(wifi.psk.get_secret_value())}")
    else:
        lines.append("  key_mgmt=NONE")
    if wifi.hidden:
        lines.append("  scan_ssid=1")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _nm_conf(wifi: ProvisionWifi) -> str:
    lines = [
        "[connection]",
        "id=cultivai-wifi",
        "type=wifi",
        "autoconnect=true",
        "",
        "[wifi]",
        "mode=infrastructure",
        f"ssid={wifi.ssid}",
        f"hidden={'true' if wifi.hidden else 'false'}",
    ]
    if wifi.psk is not None:
        lines += ["", "[wifi-security]", "key-mgmt=wpa-psk", f"psk={wifi.psk.get_secret_value()}"]
    lines += ["", "[ipv4]", "method=auto", "", "[ipv6]", "method=auto"]
    return "\n".join(lines) + "\n"


def write_problems(paths: Paths, problems: list[str]) -> None:
    """Record what to fix, for the journal, the status page and `cultivai-firstboot status`."""
    body = {"problems": problems, "file": str(paths.provision_file)}
    durable_write(paths.problems_file, json.dumps(body, indent=2).encode())


def page_password(prov: ProvisionConfig, paths: Paths, owner: str | None) -> tuple[str, bool]:
    """(password, generated): from cultivai.yaml, else the one generated on an earlier run."""
    from edge.web.password import generate_password

    stored = paths.secrets / "page-password"
    if prov.web.password is not None:
        password = prov.web.password.get_secret_value()
        durable_write(stored, password.encode() + b"\n", 0o600)
        return password, False
    try:
        existing = stored.read_text().strip()
    except OSError:
        existing = ""
    if existing:
        return existing, False
    password = generate_password()
    durable_write(stored, password.encode() + b"\n", 0o600)
    return password, True


def provision(paths: Paths, system: System) -> Outcome:
    """One first-boot run. Never raises for a bad file: returns the problems instead."""
    if not paths.provision_file.exists():
        if (paths.etc / "edge.yaml").exists():
            return Outcome("unchanged")
        problems = [
            f"{PROVISION_NAME}: not found on the boot partition; copy one there "
            f"(see {PROVISION_NAME}.example) and restart"
        ]
        write_problems(paths, problems)
        return Outcome("problems", problems=tuple(problems))
    try:
        raw = yaml_config.read_yaml(paths.provision_file, ConfigError)
        prov = read_provision(paths.provision_file)
        device_id = prov.device.id or derive_device_id(paths)
    except ConfigError as exc:
        write_problems(paths, exc.problems)
        return Outcome("problems", problems=tuple(exc.problems))
    from edge.config import DeviceConfig

    try:
        DeviceConfig(id=device_id)
    except ValidationError as exc:
        problems = [f"device.id: {e['msg']}; got {device_id!r}" for e in exc.errors()]
        write_problems(paths, problems)
        return Outcome("problems", problems=tuple(problems))
    owner = owner_or_none(system.owner)
    from edge.web.password import hash_password

    password, generated = page_password(prov, paths, owner)
    problems = apply(prov, device_id, paths, system, owner, hash_password(password))
    if problems:
        write_problems(paths, problems)
        return Outcome("problems", device_id, tuple(problems))
    finish(paths, raw)
    return Outcome("provisioned", device_id, (), password if generated else None)


def apply(
    prov: ProvisionConfig,
    device_id: str,
    paths: Paths,
    system: System,
    owner: str | None,
    password_hash: str,
) -> list[str]:
    """Write edge.yaml and its secrets, host name, SSH keys, Wi-Fi; the problems, if any."""
    from edge.config_checks import check_file

    data = edge_config_data(prov, device_id, paths, password_hash)
    if prov.broker is not None and prov.broker.password is not None:
        secret = prov.broker.password.get_secret_value().encode() + b"\n"
        durable_write(paths.secrets / "mqtt-password", secret, 0o600, owner)
    if prov.broker is not None and prov.broker.ca is not None:
        durable_write(paths.etc / "broker-ca.pem", prov.broker.ca.encode(), 0o644)
    text = "# Written by first boot from cultivai.yaml; edit here from now on.\n"
    text += yaml.safe_dump(data, sort_keys=False)
    candidate = paths.etc / ".edge.yaml.candidate"
    durable_write(candidate, text.encode(), 0o640)
    errors, warnings = check_file(candidate, env={})
    for w in warnings:
        log.warning("first boot: %s", w)
    if errors:
        candidate.unlink(missing_ok=True)
        return [e.replace(str(candidate), "edge.yaml") for e in errors]
    if owner is not None:
        os.chown(candidate, 0, _ids(owner)[1])
    os.replace(candidate, paths.etc / "edge.yaml")
    fsync_dir(paths.etc)
    hostname = prov.device.hostname or hostname_for(device_id)
    set_hostname(paths, hostname, system)
    if prov.ssh.authorized_keys:
        keys = "\n".join(prov.ssh.authorized_keys) + "\n"
        paths.root_ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
        durable_write(paths.root_ssh / "authorized_keys", keys.encode(), 0o600)
    if prov.wifi is not None:
        if paths.network_manager.is_dir():
            conf = paths.network_manager / "cultivai-wifi.nmconnection"
            durable_write(conf, _nm_conf(prov.wifi).encode(), 0o600)
        else:
            conf = paths.wpa_supplicant / "wpa_supplicant-wlan0.conf"
            durable_write(conf, _wpa_conf(prov.wifi).encode(), 0o600)
        system.enable_wifi("wlan0")
        system.actions.append("wifi")
    return []


def set_hostname(paths: Paths, hostname: str, system: System) -> None:
    """/etc/hostname, the 127.0.1.1 line of /etc/hosts, and the running kernel's name."""
    durable_write(paths.hostname, f"{hostname}\n".encode())
    try:
        hosts = paths.hosts.read_text().splitlines()
    except OSError:
        hosts = ["127.0.0.1\tlocalhost"]
    hosts = [h for h in hosts if not h.startswith("127.0.1.1")] + [f"127.0.1.1\t{hostname}"]
    durable_write(paths.hosts, ("\n".join(hosts) + "\n").encode())
    try:
        system.set_hostname(hostname)
    except OSError as exc:
        log.warning("first boot: could not set the running host name: %s", exc)
    system.actions.append(f"hostname {hostname}")


def finish(paths: Paths, raw: object) -> None:
    """Leave a copy without secrets on the boot partition, delete the original, last."""
    note = "# Applied at first boot; secrets were moved to the device. Not read again.\n"
    body = note + yaml.safe_dump(sanitized(raw), sort_keys=False)
    durable_write(paths.boot / APPLIED_NAME, body.encode(), 0o600)
    scrub(paths.provision_file)
    paths.provision_file.unlink()
    fsync_dir(paths.boot)
    paths.problems_file.unlink(missing_ok=True)
    durable_write(paths.state / "done", b"ok\n")


def scrub(path: Path) -> None:
    """Overwrite a file's bytes in place before it is deleted.

    Deleting a file on FAT only frees its clusters: the passwords would stay readable
    on the card. FAT overwrites in place, so zeros written here land on those clusters.
    """
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.write(b"\0" * size)
        f.flush()
        os.fsync(f.fileno())


def _enable_wifi(iface: str) -> None:
    import subprocess

    if Path("/etc/NetworkManager").is_dir():
        return
    unit = f"wpa_supplicant@{iface}.service"
    # --no-block: the unit waits for the Wi-Fi device, which may appear later (or never,
    # on a wired camera); first boot must not wait with it.
    subprocess.run(["systemctl", "enable", unit], check=False)
    subprocess.run(["systemctl", "start", "--no-block", unit], check=False)


def read_problems(paths: Paths) -> list[str]:
    """The problems the last run recorded, or an empty list."""
    try:
        body = json.loads(paths.problems_file.read_text())
    except (OSError, ValueError):
        return []
    problems = body.get("problems") if isinstance(body, dict) else None
    return [str(p) for p in problems] if isinstance(problems, list) else []


def problems_page(problems: list[str], paths: Paths) -> str:
    """The HTML page shown while the device is not provisioned."""
    items = "\n".join(f"<li><code>{html.escape(p)}</code></li>" for p in problems)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>CultivAI: set-up needed</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><h1>This camera is not set up yet</h1>
<p>First boot could not use <code>{html.escape(str(paths.provision_file))}</code>:</p>
<ul>{items}</ul>
<p>Fix the file on the SD card's boot partition (the small FAT partition named
CULTIVAI), put it back in the camera and restart it.</p></body></html>
"""


def serve_problems(paths: Paths, host: str, port: int) -> None:
    """Serve the problems page and a 503 /healthz until the service is stopped."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            problems = read_problems(paths) or ["no problems recorded: restart the device"]
            if self.path.split("?", 1)[0] == "/healthz":
                body = json.dumps({"status": "not provisioned", "problems": problems}).encode()
                kind = "application/json"
            else:
                body = problems_page(problems, paths).encode()
                kind = "text/html; charset=utf-8"
            self.send_response(503)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(format, *args)

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    server.serve_forever()


REFERENCE_BEGIN = "<!-- provision-reference:begin -->"
REFERENCE_END = "<!-- provision-reference:end -->"


def render_reference() -> str:
    """The cultivai.yaml reference (Markdown), from the models above."""
    from edge.config_reference import _table

    header = ["| key | type | default | meaning |", "|---|---|---|---|"]
    out: list[str] = []
    for section, fld in ProvisionConfig.model_fields.items():
        model = fld.annotation
        args = [a for a in getattr(model, "__args__", ()) if a is not type(None)]
        model = args[0] if args else model
        if isinstance(model, type) and issubclass(model, BaseModel):
            out += [f"#### `{section}`: {fld.description}", "", *header]
            out += [*_table(model, f"{section}."), ""]
        else:
            out += [f"#### `{section}`: {fld.description}", ""]
    return "\n".join(out).rstrip() + "\n"


def update_reference(readme: Path) -> bool:
    """Rewrite the reference between the markers in `readme`; True when it changed."""
    text = readme.read_text(encoding="utf-8")
    start = text.index(REFERENCE_BEGIN) + len(REFERENCE_BEGIN)
    end = text.index(REFERENCE_END)
    new = text[:start] + "\n" + render_reference() + text[end:]
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return new != text


def main(argv: list[str] | None = None) -> int:
    """cultivai-firstboot [run|status|status-page|reference]."""
    p = argparse.ArgumentParser(prog="cultivai-firstboot", description=__doc__.splitlines()[0])
    p.add_argument(
        "action", nargs="?", default="run", choices=["run", "status", "status-page", "reference"]
    )
    p.add_argument("--boot", type=Path, default=Paths.boot, help="boot partition mount point")
    p.add_argument("--model-dir", type=Path, default=None, help="model folder for edge.yaml")
    p.add_argument("--port", type=int, default=8080, help="status-page port")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    paths = Paths(boot=a.boot, model_dir=a.model_dir)
    if a.action == "reference":
        print(render_reference(), end="")
        return 0
    if a.action == "status":
        problems = read_problems(paths)
        print("\n".join(problems) if problems else "no first-boot problems recorded")
        return 1 if problems else 0
    if a.action == "status-page":
        serve_problems(paths, "0.0.0.0", a.port)
        return 0
    outcome = provision(paths, System(enable_wifi=_enable_wifi))
    if outcome.status == "problems":
        for problem in outcome.problems:
            print(f"cultivai first boot: {problem}", file=sys.stderr)
        print(
            f"cultivai first boot: fix {paths.provision_file} and restart; "
            f"the status page on port {a.port} lists the problems",
            file=sys.stderr,
        )
    elif outcome.status == "provisioned":
        print(f"cultivai first boot: provisioned as {outcome.device_id}")
        if outcome.generated_password is not None:
            # The console is the one place a grower without SSH can read it.
            print(f"cultivai first boot: status page password: {outcome.generated_password}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

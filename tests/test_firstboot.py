"""First boot without a VM: provisioning, secrets, idempotence, power cuts, bad files."""

from __future__ import annotations

import json
import os
import stat
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from edge import firstboot
from edge.config import load_config
from edge.firstboot import Paths, System, provision
from edge.web.password import verify_password

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHq2u9yV5T0cGc2bOQmZ7m5P0XXKc0l9Jj1oQxw1iJwz admin@farm"


def _make_ca() -> str:
    """A real self-signed CA certificate (check-config loads it)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                f"{d}/k",
                "-out",
                f"{d}/c",
                "-subj",
                "/CN=test-ca",
                "-days",
                "2",
            ],
            check=True,
            capture_output=True,
        )
        return Path(f"{d}/c").read_text()


CA = _make_ca()


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    """Every first-boot path inside tmp_path, with a machine id and no board serial."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/machine-id").write_text("0123456789abcdef0123456789abcdef\n")
    (root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\tcultivai\n")
    (root / "boot").mkdir()
    return Paths(
        boot=root / "boot",
        etc=root / "etc/cultivai",
        state=root / "var/lib/cultivai/firstboot",
        data=root / "var/lib/cultivai",
        root_ssh=root / "root/.ssh",
        hostname=root / "etc/hostname",
        hosts=root / "etc/hosts",
        machine_id=root / "etc/machine-id",
        serials=(root / "proc/device-tree/serial-number",),
        wpa_supplicant=root / "etc/wpa_supplicant",
        network_manager=root / "etc/NetworkManager/system-connections",
    )


@pytest.fixture
def system() -> System:
    """A system whose host name and Wi-Fi changes are recorded, not made."""
    names: list[str] = []
    s = System(owner=None, set_hostname=names.append)
    s.actions = []
    return s


def write_provision(paths: Paths, data: object) -> None:
    paths.boot.mkdir(parents=True, exist_ok=True)
    text = data if isinstance(data, str) else yaml.safe_dump(data)
    paths.provision_file.write_text(text)


def full_file() -> dict[str, object]:
    return {
        "device": {"id": "cam-7", "site": "farm", "room": "veg"},
        "broker": {"host": "broker.farm", "password": "s3cret-broker", "ca": CA},
        "wifi": {"ssid": "grow room", "psk": "wifi-passphrase", "country": "nl"},
        "ssh": {"authorized_keys": [KEY]},
        "web": {"password": "page-pass-123"},
        "edge": {"camera": {"backend": "synthetic"}, "schedule": {"interval_s": 60}},
    }


def test_provision_writes_a_config_the_agent_accepts(paths: Paths, system: System) -> None:
    write_provision(paths, {"device": {"id": "cam-1"}, "broker": {"host": "10.0.0.5"}})
    out = provision(paths, system)
    assert out.status == "provisioned", out.problems
    config = load_config(paths.etc / "edge.yaml", env={})
    assert config.device.id == "cam-1"
    assert config.mqtt.enabled and config.mqtt.host == "10.0.0.5" and config.mqtt.port == 1883
    assert config.mqtt.username == "cam-1"
    assert config.storage.dir == paths.data


def test_secrets_go_to_0600_files_and_leave_the_boot_partition(
    paths: Paths, system: System
) -> None:
    write_provision(paths, full_file())
    out = provision(paths, system)
    assert out.status == "provisioned", out.problems
    secret = paths.secrets / "mqtt-password"
    assert secret.read_text().strip() == "s3cret-broker"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    wpa = paths.wpa_supplicant / "wpa_supplicant-wlan0.conf"
    assert 'psk="wifi-passphrase"' in wpa.read_text()
    assert stat.S_IMODE(wpa.stat().st_mode) == 0o600
    assert "country=NL" in wpa.read_text()
    config = load_config(paths.etc / "edge.yaml", env={})
    assert config.mqtt.password_file == secret
    assert config.mqtt.tls is not None and config.mqtt.tls.ca_file.read_text() == CA
    assert config.mqtt.port == 8883
    assert "s3cret-broker" not in (paths.etc / "edge.yaml").read_text()
    assert not paths.provision_file.exists()
    boot_text = "".join(p.read_text() for p in paths.boot.iterdir())
    for secret_text in ("s3cret-broker", "wifi-passphrase", "page-pass-123"):
        assert secret_text not in boot_text
    applied = yaml.safe_load((paths.boot / firstboot.APPLIED_NAME).read_text())
    assert applied["broker"]["host"] == "broker.farm"
    assert applied["broker"]["password"] == firstboot.REMOVED


def test_the_original_is_overwritten_before_it_is_deleted(paths: Paths, system: System) -> None:
    """FAT frees clusters without clearing them: the secrets must be zeroed first."""
    write_provision(paths, full_file())
    other_name = paths.boot.parent / "same-inode"
    os.link(paths.provision_file, other_name)
    provision(paths, system)
    assert not paths.provision_file.exists()
    left = other_name.read_bytes()
    assert left and set(left) == {0}


def test_page_password_from_file_is_hashed_into_the_config(paths: Paths, system: System) -> None:
    write_provision(paths, full_file())
    provision(paths, system)
    config = load_config(paths.etc / "edge.yaml", env={})
    assert config.web.password_hash is not None
    assert verify_password(config.web.password_hash, "page-pass-123")


def test_generated_page_password_is_reported_once_and_kept(paths: Paths, system: System) -> None:
    write_provision(paths, {"device": {"id": "cam-2"}})
    out = provision(paths, system)
    assert out.generated_password is not None
    stored = (paths.secrets / "page-password").read_text().strip()
    assert stored == out.generated_password
    assert stat.S_IMODE((paths.secrets / "page-password").stat().st_mode) == 0o600
    config = load_config(paths.etc / "edge.yaml", env={})
    assert config.web.password_hash is not None
    assert verify_password(config.web.password_hash, stored)


def test_device_id_is_derived_from_the_machine_id_stably(paths: Paths, system: System) -> None:
    write_provision(paths, {"device": {"site": "farm"}})
    first = provision(paths, system)
    assert first.device_id is not None and first.device_id.startswith("cultivai-")
    assert "0123456789abcdef" not in first.device_id  # the machine id never leaves as is
    assert firstboot.derive_device_id(paths) == first.device_id


def test_board_serial_wins_over_the_machine_id(paths: Paths) -> None:
    serial = paths.serials[0]
    serial.parent.mkdir(parents=True)
    serial.write_bytes(b"10000000a1b2c3d4\0")
    assert firstboot.derive_device_id(paths) == "cultivai-0000a1b2c3d4"


def test_hostname_ssh_keys_and_hosts_are_set(paths: Paths, system: System) -> None:
    write_provision(paths, {"device": {"id": "Cam_7.veg"}, "ssh": {"authorized_keys": [KEY]}})
    provision(paths, system)
    assert paths.hostname.read_text().strip() == "cam-7-veg"
    assert "127.0.1.1\tcam-7-veg" in paths.hosts.read_text()
    assert paths.hosts.read_text().count("127.0.1.1") == 1
    assert (paths.root_ssh / "authorized_keys").read_text().strip() == KEY
    assert "hostname cam-7-veg" in system.actions


def test_a_second_run_changes_nothing(paths: Paths, system: System) -> None:
    write_provision(paths, full_file())
    assert provision(paths, system).status == "provisioned"
    before = {p: p.read_bytes() for p in paths.etc.rglob("*") if p.is_file()}
    assert provision(paths, system).status == "unchanged"
    assert {p: p.read_bytes() for p in paths.etc.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize(
    "cut_after", ["mqtt-password", "edge.yaml", "hostname", "cultivai-applied.yaml"]
)
def test_a_power_cut_in_the_middle_completes_on_the_next_boot(
    paths: Paths, system: System, monkeypatch: pytest.MonkeyPatch, cut_after: str
) -> None:
    """Stop the run right after one durable write (as a power cut would), then boot again."""
    write_provision(paths, full_file())
    real = firstboot.durable_write

    class PowerCut(BaseException):
        pass

    def cutting(path: Path, data: bytes, mode: int = 0o644, owner: str | None = None) -> None:
        real(path, data, mode, owner)
        if path.name == cut_after:
            raise PowerCut

    real_replace = os.replace

    def cutting_replace(src: object, dst: object) -> None:
        real_replace(src, dst)  # type: ignore[arg-type]
        if Path(str(dst)).name == cut_after:
            raise PowerCut

    monkeypatch.setattr(firstboot, "durable_write", cutting)
    monkeypatch.setattr(firstboot.os, "replace", cutting_replace)
    with pytest.raises(PowerCut):
        provision(paths, system)
    monkeypatch.undo()
    assert paths.provision_file.exists(), "the original goes last"
    out = provision(paths, system)
    assert out.status == "provisioned", out.problems
    assert not paths.provision_file.exists()
    config = load_config(paths.etc / "edge.yaml", env={})
    assert config.device.id == "cam-7"
    assert config.web.password_hash is not None
    assert verify_password(config.web.password_hash, "page-pass-123")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("device: [unclosed", "line"),
        ({"device": {"id": "bad/id"}}, "device.id"),
        ({"broker": {"hots": "x"}}, "broker.hots: unknown setting"),
        ({"wifi": {"ssid": "x", "psk": "short", "country": "NL"}}, "wifi.psk"),
        ({"ssh": {"authorized_keys": ["hunter2"]}}, "ssh.authorized_keys"),
        ({"broker": {"host": "b", "ca": "not a pem"}}, "broker.ca"),
        ({"edge": {"schedule": {"interval_s": 0}}}, "schedule.interval_s"),
        ({"edge": {"camera": {"backend": "nope"}}}, "camera.backend"),
    ],
)
def test_a_bad_file_is_reported_naming_the_field_and_kept(
    paths: Paths, system: System, text: object, expected: str
) -> None:
    write_provision(paths, text)
    out = provision(paths, system)
    assert out.status == "problems"
    assert any(expected in p for p in out.problems), out.problems
    assert paths.provision_file.exists(), "the grower fixes the file in place"
    assert not (paths.etc / "edge.yaml").exists()
    assert firstboot.read_problems(paths) == list(out.problems)


def test_a_fixed_file_clears_the_problems(paths: Paths, system: System) -> None:
    write_provision(paths, {"broker": {"hots": "x"}})
    assert provision(paths, system).status == "problems"
    write_provision(paths, {"broker": {"host": "x"}})
    assert provision(paths, system).status == "provisioned"
    assert firstboot.read_problems(paths) == []


def test_no_file_and_no_config_says_what_to_do(paths: Paths, system: System) -> None:
    out = provision(paths, system)
    assert out.status == "problems"
    assert "not found on the boot partition" in out.problems[0]


def test_network_manager_gets_a_connection_file_when_present(paths: Paths, system: System) -> None:
    paths.network_manager.mkdir(parents=True)
    write_provision(paths, full_file())
    provision(paths, system)
    conn = paths.network_manager / "cultivai-wifi.nmconnection"
    assert "psk=wifi-passphrase" in conn.read_text()
    assert stat.S_IMODE(conn.stat().st_mode) == 0o600


def test_status_page_shows_the_problems_and_healthz_says_503(paths: Paths, system: System) -> None:
    write_provision(paths, {"broker": {"hots": "<script>"}})
    provision(paths, system)
    import http.server

    servers: list[http.server.ThreadingHTTPServer] = []
    real = http.server.ThreadingHTTPServer

    class Recording(real):  # type: ignore[misc, valid-type]
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, **kw)  # type: ignore[arg-type]
            servers.append(self)

    http.server.ThreadingHTTPServer = Recording  # type: ignore[misc]
    try:
        t = threading.Thread(target=firstboot.serve_problems, args=(paths, "127.0.0.1", 0))
        t.start()
        while not servers:
            threading.Event().wait(0.01)
    finally:
        http.server.ThreadingHTTPServer = real  # type: ignore[misc]
    port = servers[0].server_address[1]
    try:
        with pytest.raises(urllib.error.HTTPError) as page:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10)
        body = page.value.read().decode()
        assert page.value.code == 503
        assert "broker.hots: unknown setting" in body
        assert "<script>" not in body
        with pytest.raises(urllib.error.HTTPError) as health:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert json.loads(health.value.read())["status"] == "not provisioned"
    finally:
        servers[0].shutdown()
        t.join(10)


def test_hostile_yaml_is_refused_before_parsing(paths: Paths, system: System) -> None:
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n'
    for i in range(1, 6):
        bomb += f"{chr(97 + i)}: &{chr(97 + i)} [" + ",".join([f"*{chr(96 + i)}"] * 10) + "]\n"
    write_provision(paths, bomb)
    out = provision(paths, system)
    assert out.status == "problems"
    assert any("expands to more than" in p for p in out.problems)


def test_readme_carries_the_current_cultivai_yaml_reference() -> None:
    readme = Path(__file__).resolve().parent.parent / "README.md"
    text = readme.read_text()
    start = text.index(firstboot.REFERENCE_BEGIN) + len(firstboot.REFERENCE_BEGIN)
    end = text.index(firstboot.REFERENCE_END)
    assert text[start:end].strip() == firstboot.render_reference().strip(), (
        "README's cultivai.yaml reference is stale: python -c 'from pathlib import Path; "
        'from edge.firstboot import update_reference; update_reference(Path("README.md"))\''
    )


def test_the_shipped_example_is_a_valid_cultivai_yaml(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parent.parent / "image/appliance/cultivai.yaml.example"
    prov = firstboot.read_provision(example)
    assert prov.broker is not None and prov.broker.host

"""The appliance image in QEMU: first boot, the agent under systemd, watchdog, power cuts.

`make test` runs the short set (one first boot, three power cuts); `make image-test`
sets CULTIVAI_IMAGE_CAMPAIGN=full for twenty cuts.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.image.conftest import SECRETS, campaign, record
from tests.image.harness import REPO, Machine, cache_root, store_check
from tests.mqtt_client import Recorder

pytestmark = [pytest.mark.image, pytest.mark.timeout(3600)]
# Taken at import: function-scoped fixtures of the suite may point XDG_CACHE_HOME elsewhere.
IMAGE_CACHE = cache_root()


def seqs(recorder: Recorder, device_id: str = "img-cam-1") -> list[int]:
    """Every observation seq the broker delivered for a device, duplicates removed, in order."""
    return sorted({int(o["seq"]) for o in recorder.json(f"{device_id}/observation")})


def test_first_boot_provisions_the_device_and_starts_the_agent(device: Machine) -> None:
    out = device.ssh(
        "systemctl is-active cultivai-edge cultivai-firstboot; hostname; "
        "stat -c '%a %U' /etc/cultivai/secrets/mqtt-password; "
        "cat /etc/cultivai/secrets/mqtt-password; "
        "systemctl is-active cultivai-provision-status || true"
    ).stdout.split()
    try:
        blame = device.ssh(
            "systemd-analyze; systemd-analyze blame --no-pager | head -8", check=False
        )
        print(blame.stdout)
    except subprocess.TimeoutExpired:
        print("systemd-analyze did not answer in time")
    assert out[:2] == ["active", "active"], out
    assert out[2] == "img-cam-1"
    assert out[3:5] == ["600", "cultivai"]
    assert out[5] == "broker-secret-9f3"
    assert out[6] == "inactive", "the set-up page runs only while provisioning failed"


def test_status_page_answers_healthz_through_the_forward(device: Machine) -> None:
    url = f"http://127.0.0.1:{device.web_port}/healthz"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.loads(r.read())
                assert r.status == 200
                break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(2)
    assert body.get("ok") is True, body


def test_observations_reach_the_broker_on_the_host(device: Machine, recorder: Recorder) -> None:
    first = seqs(recorder)
    assert recorder.wait_for(lambda: len(seqs(recorder)) >= len(first) + 2, timeout=120)
    got = recorder.json("img-cam-1/observation")
    assert got and {o["device_id"] for o in got} == {"img-cam-1"}
    assert seqs(recorder)[0] == 1


def test_secrets_are_gone_from_the_boot_partition(device: Machine) -> None:
    listing = device.ssh("ls /boot/firmware; cat /boot/firmware/*").stdout
    assert "cultivai.yaml\n" not in listing.replace("cultivai.yaml.example", "")
    assert "cultivai-applied.yaml" in listing
    for secret in SECRETS:
        assert secret not in listing
    # And on the medium itself, not only through the guest's view of it.
    device.ssh("sync", check=False)
    found = device.ssh(
        f"grep -a -o -E '{'|'.join(SECRETS)}' /dev/vda1 || true", timeout=120
    ).stdout.split()
    assert found == [], f"still readable on the boot partition's sectors: {found}"


def test_sshd_takes_keys_only(device: Machine) -> None:
    out = device.ssh("sshd -T | grep -E '^(passwordauthentication|permitrootlogin)'").stdout
    assert "passwordauthentication no" in out
    assert "permitrootlogin without-password" in out or "prohibit-password" in out
    shadow = device.ssh("getent shadow root cultivai | cut -d: -f1,2").stdout.split()
    for entry in shadow:
        assert entry.split(":")[1].startswith(("!", "*")), f"{entry}: an account has a password"


def test_systemd_analyze_security_of_the_agent(device: Machine) -> None:
    out = device.ssh("systemd-analyze security cultivai-edge.service --no-pager", check=False)
    last = [line for line in out.stdout.splitlines() if "Overall exposure level" in line]
    assert last, out.stdout[-2000:] + out.stderr
    score = float(last[0].split("level for cultivai-edge.service:")[1].split()[0])
    record("systemd_analyze_security_cultivai_edge", last[0].split(":", 1)[1].strip())
    assert score < 5.0, last[0]


def test_watchdog_restarts_an_agent_stopped_with_sigstop(device: Machine) -> None:
    unit = device.ssh("systemctl show cultivai-edge -p WatchdogUSec -p Type").stdout
    props = dict(line.split("=", 1) for line in unit.split())
    if props.get("Type") != "notify" or props.get("WatchdogUSec") in ("0", "infinity", None):
        pytest.skip("the agent unit has no systemd watchdog (Type=notify, WatchdogSec=) yet")
    before = device.ssh("systemctl show cultivai-edge -p MainPID -p NRestarts").stdout
    pid = dict(line.split("=", 1) for line in before.split())["MainPID"]
    device.ssh(f"kill -STOP {pid}")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        now = device.ssh("systemctl show cultivai-edge -p MainPID -p ActiveState").stdout
        state = dict(line.split("=", 1) for line in now.split())
        if state["MainPID"] not in (pid, "0") and state["ActiveState"] == "active":
            break
        time.sleep(5)
    else:
        pytest.fail(f"the agent (pid {pid}) stopped with SIGSTOP was not restarted")
    log = device.ssh("journalctl -u cultivai-edge -b --no-pager | tail -30").stdout
    assert "watchdog" in log.lower(), log


def test_power_cuts_during_captures_leave_a_clean_device(
    device: Machine, recorder: Recorder
) -> None:
    cuts = 20 if campaign() else 3
    rng = random.Random(1414)
    clean = 0
    for i in range(cuts):
        have = len(seqs(recorder))
        assert recorder.wait_for(lambda h=have: len(seqs(recorder)) > h, timeout=300), (
            f"cut {i}: no new observation before the cut"
        )
        time.sleep(rng.uniform(0, 5))  # somewhere inside the 5 s capture cycle
        device.cut_power()
        fsck = device.fsck_root()
        assert fsck.returncode == 0, f"cut {i}: e2fsck -fn after journal replay:\n{fsck.stdout}"
        if i == 0:
            files = device.boot_files()
            for secret in SECRETS:
                assert not any(secret.encode() in data for data in files.values())
        device.start()
        device.wait_ssh(900)
        device.ssh("systemctl is-active --wait cultivai-edge || sleep 30", check=False)
        state = store_check(device)
        assert state["integrity"] == "ok", (i, state)
        assert state["contiguous"], (i, state)
        assert state["missing_photos"] == [], (i, state)
        assert state["outbox_orphans"] == 0, (i, state)
        top = int(state["max_seq"])
        # Everything the store committed reaches the broker, with no gap, after the cut.
        assert recorder.wait_for(lambda t=top: seqs(recorder)[-1:] >= [t], timeout=300), (
            f"cut {i}: seq {top} committed on the device never reached the broker"
        )
        got = seqs(recorder)
        assert got == list(range(1, got[-1] + 1)), f"cut {i}: gap in delivered seqs"
        assert device.ssh("systemctl is-active cultivai-edge", check=False).stdout.strip() == (
            "active"
        )
        clean += 1
    record(f"power_cuts_clean_of_{cuts}", clean)


def build_update_wheel(dest: Path, version: str) -> Path:
    """The agent's wheel with another version number: a firmware update to install."""
    src = dest / "src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    for name in ("edge", "cloud_bridge", "README.md"):
        (shutil.copytree if (REPO / name).is_dir() else shutil.copy2)(REPO / name, src / name)
    (src / "models/plant_health").mkdir(parents=True)
    for f in ("model.tflite", "labels.txt", "manifest.json"):
        shutil.copy2(REPO / "models/plant_health" / f, src / "models/plant_health" / f)
    text = (REPO / "pyproject.toml").read_text()
    (src / "pyproject.toml").write_text(
        re.sub(r'^version = ".*"$', f'version = "{version}"', text, count=1, flags=re.M)
    )
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dest), str(src)],
        check=True,
        capture_output=True,
    )
    return next(dest.glob(f"cultivai_edge-{version}-*.whl"))


def firmware_status(device: Machine) -> dict[str, Any]:
    out = device.ssh("cultivai-edge firmware status", timeout=120).stdout
    return dict(json.loads(out))


def test_a_power_cut_during_an_update_comes_back_on_a_working_version(
    device: Machine, recorder: Recorder, tmp_path: Path
) -> None:
    if not campaign():
        pytest.skip(
            "the interrupted update runs in `make image-test`: its check reads the agent "
            "while it may still be starting after the cut (it must wait until active)"
        )
    if device.ssh("cultivai-edge firmware --help", check=False, timeout=120).returncode != 0:
        pytest.skip("the image's agent has no `firmware` command (A/B updater) yet")
    houses = sorted(IMAGE_CACHE.glob("wheels-amd64-*/.complete"), key=lambda p: p.stat().st_mtime)
    assert houses, "no dependency wheelhouse in the image cache"
    new = build_update_wheel(tmp_path, "0.1.1")
    stage = tmp_path / "update"
    shutil.copytree(houses[-1].parent, stage / "wheels")
    shutil.copy2(new, stage)
    device.push(stage, "/var/tmp/update")
    start = firmware_status(device)
    old_release = str(start["current"])
    wheels = {old_release: f"/var/tmp/update/{new.name}"}
    rng = random.Random(2718)
    cuts = 5 if campaign() else 1
    outcomes = []
    for i in range(cuts):
        current = str(firmware_status(device)["current"])
        target = wheels.get(current) or f"/opt/cultivai/edge/releases/{old_release}/dist/*.whl"
        device.ssh(
            f"cd /var/tmp/update && nohup cultivai-edge firmware install {target} "
            "--wheelhouse /var/tmp/update/wheels > install.log 2>&1 &"
        )
        time.sleep(rng.uniform(5, 150))  # somewhere in venv, pip, switch, restart or trial
        log = device.ssh("tail -3 /var/tmp/update/install.log", check=False).stdout
        device.cut_power()
        fsck = device.fsck_root()
        assert fsck.returncode == 0, f"update cut {i}: e2fsck:\n{fsck.stdout}"
        device.start()
        device.wait_ssh(900)
        after = firmware_status(device)
        assert after["releases"].get(after["current"]) == "installed", (i, after)
        assert (
            device.ssh("systemctl is-active --wait cultivai-edge", check=False).stdout.split()[-1]
            == "active"
        ), (i, after)
        have = len(seqs(recorder))
        assert recorder.wait_for(lambda h=have: len(seqs(recorder)) > h, timeout=300), (
            f"update cut {i}: no observation after the cut"
        )
        assert store_check(device)["integrity"] == "ok"
        state = after.get("state") or {}
        outcomes.append(
            f"{after['current']} ({state.get('state')}) after cut at: {log.strip()[-80:]}"
        )
    record(f"update_cuts_{cuts}", outcomes)

"""Model rollout with rollback, rolling firmware update with health gate, rollback.yml."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fleet.sandbox import REPO, PlaybookRun, Sandbox, rebuilt_wheel

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
GATE = ("-e", "edge_device_health_gate=true")
BROKEN_SELFTEST = b'''

_working_selftest = run_selftest


def run_selftest(config: EdgeConfig, pin_factory: Any = None) -> list[CheckResult]:  # noqa: F811
    """This release is broken: one part always fails."""
    return [*_working_selftest(config, pin_factory), CheckResult("firmware", "fail", "broken")]
'''


def make_model(
    folder: Path,
    version: str,
    damage: Callable[[Path], None] | None = None,
    update_manifest: bool = True,
) -> Path:
    """A copy of the shipped model under another version, optionally damaged."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name in ("manifest.json", "labels.txt", "model.tflite"):
        shutil.copy(REPO / "models" / "plant_health" / name, folder / name)
    if damage is not None:
        damage(folder / "model.tflite")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["version"] = version
    if update_manifest:
        digest = hashlib.sha256((folder / "model.tflite").read_bytes()).hexdigest()
        manifest["files"]["int8"]["sha256"] = digest
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return folder


def not_a_model(path: Path) -> None:
    path.write_bytes(b"this is not a TFLite flatbuffer\n" * 100)


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def rollout(fleet: Sandbox, model: Path) -> PlaybookRun:
    return fleet.playbook(
        "model-rollout.yml",
        "-e",
        f"cultivai_model_src={model}",
        "-e",
        "cultivai_devices=dev-a",
        *GATE,
    )


def model_links(fleet: Sandbox) -> tuple[str, str]:
    models = fleet.device_path("dev-a", "opt/cultivai/edge/models")
    return (models / "current").readlink().name, (models / "previous").readlink().name


def test_model_rollout_switches_the_device_to_the_new_model(fleet: Sandbox) -> None:
    model = make_model(fleet.root / "models" / "good", "1.1.0-fleet")
    run = rollout(fleet, model)
    assert run.returncode == 0, run.explain()
    assert fleet.model_version("dev-a")["version"] == "1.1.0-fleet"
    assert "1.1.0-fleet" in fleet.selftest("dev-a")["model"]["detail"]
    assert model_links(fleet) == ("1.1.0-fleet", "1.0.0")


def test_model_rollout_of_a_model_that_cannot_load_rolls_back(fleet: Sandbox) -> None:
    before = fleet.model_version("dev-a")["version"]
    links = model_links(fleet)
    # The manifest matches the file, so the sha256 checks pass; the selftest does not.
    model = make_model(fleet.root / "models" / "broken", "9.0.0-broken", not_a_model)
    run = rollout(fleet, model)
    assert run.returncode != 0
    assert run.recap["dev-a"]["rescued"] == 1, run.explain()
    assert "Check the selftest's model part" in run.output
    assert fleet.model_version("dev-a")["version"] == before
    assert before in fleet.selftest("dev-a")["model"]["detail"]
    assert model_links(fleet) == links
    assert not fleet.device_path("dev-a", "opt/cultivai/edge/models/9.0.0-broken").exists()
    fleet.wait_healthy("dev-a")


def test_model_rollout_of_a_file_that_does_not_match_its_manifest_changes_nothing(
    fleet: Sandbox,
) -> None:
    before = fleet.model_version("dev-a")["version"]
    links = model_links(fleet)
    model = make_model(
        fleet.root / "models" / "tampered", "9.1.0", flip_a_byte, update_manifest=False
    )
    run = rollout(fleet, model)
    assert run.returncode != 0
    assert "Check the model files on the controller against the manifest" in run.output
    assert fleet.model_version("dev-a")["version"] == before
    assert model_links(fleet) == links
    assert not fleet.device_path("dev-a", "opt/cultivai/edge/models/9.1.0").exists()


def test_update_switches_to_the_new_release_and_rollback_returns(fleet: Sandbox) -> None:
    old = fleet.release("dev-a")
    wheel = rebuilt_wheel(fleet.wheel, fleet.root / "release-2")
    run = fleet.playbook(
        "update.yml", "-e", f"cultivai_wheel={wheel}", "-e", "cultivai_devices=dev-a", *GATE
    )
    assert run.returncode == 0, run.explain()
    new = fleet.release("dev-a")
    assert new != old
    assert fleet.device_path("dev-a", "opt/cultivai/edge/previous").readlink() == Path(old)

    back = fleet.playbook("rollback.yml", "-e", "cultivai_devices=dev-a", *GATE)
    assert back.returncode == 0, back.explain()
    assert fleet.release("dev-a") == old
    assert fleet.device_path("dev-a", "opt/cultivai/edge/previous").readlink() == Path(new)
    assert fleet.selftest("dev-a")["storage"]["state"] == "ok"


def test_a_release_failing_its_health_gate_is_undone_and_stops_the_rollout(
    fleet: Sandbox,
) -> None:
    before = {name: fleet.release(name) for name in ("dev-a", "dev-b")}
    previous_a = fleet.device_path("dev-a", "opt/cultivai/edge/previous").readlink()
    selftest = zipfile.ZipFile(fleet.wheel).read("edge/selftest.py") + BROKEN_SELFTEST
    wheel = rebuilt_wheel(
        fleet.wheel, fleet.root / "release-broken", {"edge/selftest.py": selftest}
    )
    # update.yml's default batches: dev-a alone first (the canary), then the rest.
    run = fleet.playbook("update.yml", "-e", f"cultivai_wheel={wheel}", *GATE)
    assert run.returncode != 0
    assert run.recap["dev-a"]["failed"] == 1 and run.recap["dev-a"]["rescued"] == 1, run.explain()
    assert "dev-b" not in run.recap, "the rollout went on past the failed batch"
    assert "firmware: broken" in run.output
    assert {name: fleet.release(name) for name in ("dev-a", "dev-b")} == before
    assert fleet.device_path("dev-a", "opt/cultivai/edge/previous").readlink() == previous_a
    fleet.wait_healthy("dev-a")

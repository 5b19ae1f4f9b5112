"""The cultivai-edge command: analyze, capture, selftest, run --demo."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
import yaml

from edge.camera.synthetic import SyntheticCamera, SyntheticCameraSettings
from edge.cli import main
from edge.clock import FakeClock


def write_config(tmp_path: Path, **sections: object) -> Path:
    data = {
        "device": {"id": "cli-cam"},
        "camera": {"backend": "synthetic", "width": 640, "height": 480},
        "storage": {"dir": str(tmp_path / "data"), "min_free_mb": 0},
        "model": {"enabled": False},
        **sections,
    }
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def photos(tmp_path: Path, clock: FakeClock) -> dict[str, Path]:
    rgb, _ = SyntheticCamera(SyntheticCameraSettings(), clock).render(16)
    good = tmp_path / "good.jpg"
    cv2.imwrite(str(good), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    png = tmp_path / "good.png"
    cv2.imwrite(str(png), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:5000])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    return {
        "good": good,
        "png": png,
        "truncated": truncated,
        "empty": empty,
        "missing": tmp_path / "missing.jpg",
    }


def test_analyze_prints_one_json_line_per_readable_file_and_names_each_bad_one(
    photos: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    order = ["good", "truncated", "empty", "png", "missing"]
    code = main(["analyze", *(str(photos[k]) for k in order)])
    out, err = capsys.readouterr()
    assert code == 1
    lines = [json.loads(line) for line in out.splitlines()]
    assert [o["image"]["source"] for o in lines] == ["good.jpg", "good.png"]
    assert abs(lines[0]["canopy"]["cover_pct"] - lines[1]["canopy"]["cover_pct"]) < 1.0
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 3
    assert "truncated.jpg" in errors[0] and "truncated" in errors[0].split(":", 2)[2]
    assert "empty.jpg" in errors[1] and "empty" in errors[1]
    assert "missing.jpg" in errors[2]


def test_analyze_exits_0_when_every_file_is_readable(
    photos: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", str(photos["good"])]) == 0
    assert json.loads(capsys.readouterr().out)["seq"] == 1


def test_capture_stores_and_prints_an_observation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    assert main(["capture", "--config", str(config)]) == 0
    assert main(["capture", "--config", str(config)]) == 0
    seqs = [json.loads(line)["seq"] for line in capsys.readouterr().out.splitlines()]
    assert seqs == [1, 2]


def test_capture_in_the_dark_fails_with_a_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, camera={"backend": "synthetic", "brightness": 0.02})
    assert main(["capture", "--config", str(config)]) == 1
    assert "too dark" in capsys.readouterr().err


def test_selftest_reports_each_part(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    assert main(["selftest", "--config", str(config), "--json"]) == 0
    results = {r["part"]: r for r in json.loads(capsys.readouterr().out)}
    assert results["storage"]["state"] == "ok"
    assert results["camera"]["state"] == "ok" and "640x480" in results["camera"]["detail"]
    assert results["model"]["state"] == "skip"
    assert results["broker"]["state"] == "skip"
    assert results["gpio"]["state"] == "skip"


def test_selftest_fails_and_says_why_for_a_broken_camera(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, camera={"backend": "replay", "folder": str(tmp_path / "x")})
    assert main(["selftest", "--config", str(config)]) == 1
    camera_line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("camera"))
    assert "FAIL" in camera_line and "does not exist" in camera_line


def test_selftest_fails_for_an_unreachable_broker(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, mqtt={"enabled": True, "host": "127.0.0.1", "port": 1})
    assert main(["selftest", "--config", str(config)]) == 1
    assert "broker   FAIL" in capsys.readouterr().out


def test_run_with_a_bad_config_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, schedule={"interval_s": -5})
    assert main(["run", "--config", str(config)]) == 2
    assert "schedule.interval_s" in capsys.readouterr().err


def test_demo_runs_on_embedded_defaults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--demo", "--data-dir", str(tmp_path / "demo"), "--max-captures", "1"])
    assert code == 0
    obs = json.loads(capsys.readouterr().out.splitlines()[0])
    assert obs["device_id"] == "demo-cam-1" and obs["camera"] == "synthetic"
    assert (tmp_path / "demo" / "edge.sqlite3").is_file()


def test_analyze_names_the_file_source_not_the_configured_camera(
    photos: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["analyze", str(photos["good"])]) == 0
    assert json.loads(capsys.readouterr().out)["camera"] == "file"


def test_analyze_expands_a_folder_to_its_images_in_name_order(
    tmp_path: Path, photos: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "shots"
    folder.mkdir()
    for name in ("b.jpg", "a.png", "c.JPG"):
        (folder / name).write_bytes(photos["good"].read_bytes())
    (folder / "notes.txt").write_text("not an image")
    (tmp_path / "empty-folder").mkdir()
    code = main(["analyze", str(folder), str(tmp_path / "empty-folder")])
    out, err = capsys.readouterr()
    assert code == 1
    assert [json.loads(x)["image"]["source"] for x in out.splitlines()] == [
        "a.png",
        "b.jpg",
        "c.JPG",
    ]
    assert (
        err.splitlines()[-1]
        == f"error: {tmp_path / 'empty-folder'}: folder has no .jpg/.jpeg/.png images"
    )


def test_json_logs_carry_litert_native_lines_as_json(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = write_config(
        tmp_path,
        model={"enabled": True},
        web={"enabled": False},
        camera={"backend": "synthetic", "width": 320, "height": 240},
        logging={"format": "json"},
        schedule={"interval_s": 1},
    )
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(config), "--max-captures", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stderr.splitlines()]
    native = [r for r in records if r["logger"] == "edge.native"]
    assert any("XNNPACK" in r["msg"] for r in native)

"""Time-lapse video from a store of synthetic captures: count, order, skipped frames."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edge import timelapse
from edge.camera.synthetic import SyntheticCamera, SyntheticCameraSettings
from edge.cli import main
from edge.clock import FakeClock
from edge.protocol import CanopyBlock, ExposureBlock, ImageBlock, Observation
from edge.store import Store, StoredImage
from edge.timelapse import TimelapseError, day_range, make_timelapse

T0 = datetime(2026, 3, 2, 6, 0, tzinfo=timezone.utc)
W, H = 192, 144
MARK = 24  # side of the top-left square whose grey level numbers each frame


@pytest.fixture
def camera(clock: FakeClock) -> SyntheticCamera:
    return SyntheticCamera(SyntheticCameraSettings(width=W, height=H, seed=3), clock)


def jpeg(camera: SyntheticCamera, mark: int, day: float, light: float = 1.0) -> bytes:
    """A synthetic canopy photo with a grey square numbering it (light scales it all)."""
    rgb, _ = camera.render(day)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    bgr[:MARK, :MARK] = mark
    bgr = np.clip(bgr.astype(np.float32) * light, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def build(at: datetime, luma: float, verdict: str = "ok") -> Callable[[int, bool], Observation]:
    def make(seq: int, stored: bool) -> Observation:
        return Observation(
            device_id="cam-1",
            seq=seq,
            captured_at=at,
            camera="synthetic",
            canopy=CanopyBlock(
                cover_pct=10, area_px=100, yellow_pct=1.0, brown_pct=0.5, exg_threshold=0.1
            ),
            exposure=ExposureBlock(
                verdict=verdict,  # type: ignore[arg-type]
                mean_luma=luma,
                under_pct=0,
                over_pct=0,
                sharpness=50,
            ),
            image=ImageBlock(width=W, height=H, stored=stored),
        )

    return make


def add(
    store: Store,
    camera: SyntheticCamera,
    at: datetime,
    mark: int,
    *,
    luma: float = 90,
    verdict: str = "ok",
    light: float = 1.0,
) -> int:
    photo = jpeg(camera, mark, day=10 + (at - T0).total_seconds() / 86400, light=light)
    return store.add_observation(build(at, luma, verdict), StoredImage(photo=photo)).seq


def decoded_marks(path: Path) -> list[int]:
    """Grey level of the numbering square in every frame the video holds."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"OpenCV cannot open {path}"
    marks = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        assert frame.shape[:2] == (H, W)
        marks.append(round(float(frame[4 : MARK - 4, 4 : MARK - 4].mean())))
    cap.release()
    return marks


def close_to(got: list[int], want: list[int], tol: int = 8) -> bool:
    return len(got) == len(want) and all(abs(g - w) <= tol for g, w in zip(got, want, strict=True))


def test_frames_are_every_lights_on_capture_in_range_in_time_order(
    tmp_path: Path, camera: SyntheticCamera
) -> None:
    store = Store(tmp_path / "data", min_free_bytes=0)
    hours = [0, 1, 2, 3, 4, 5, 6, 7]
    marks = [40 + 20 * i for i in range(len(hours))]
    # Stored out of time order: the video follows captured_at, not seq.
    for i in (3, 0, 1, 2, 7, 4, 5, 6):
        dark = i in (2, 5)
        add(
            store,
            camera,
            T0 + timedelta(hours=hours[i]),
            marks[i],
            luma=5 if dark else 90,
            verdict="under" if dark else "ok",
            light=0.05 if dark else 1.0,
        )
    add(store, camera, T0 - timedelta(days=1), 250)  # outside the range
    out = tmp_path / "grow.mp4"
    result = make_timelapse(store, T0, T0 + timedelta(hours=7), out)
    want = [m for i, m in enumerate(marks) if i not in (2, 5)]
    assert result.frames == 6 and result.skipped_dark == 2
    assert result.first == T0 and result.last == T0 + timedelta(hours=7)
    got = decoded_marks(out)
    assert close_to(got, want), (got, want)
    assert result.codec in ("avc1", "mp4v")
    assert not list(tmp_path.glob(".tmp-*"))


def test_a_dark_photo_recorded_as_ok_is_measured_and_skipped(
    tmp_path: Path, camera: SyntheticCamera
) -> None:
    store = Store(tmp_path / "data", min_free_bytes=0)
    add(store, camera, T0, 60)
    add(store, camera, T0 + timedelta(hours=1), 200, luma=90, light=0.03)
    result = make_timelapse(store, T0, T0 + timedelta(hours=2), tmp_path / "v.mp4")
    assert (result.frames, result.skipped_dark) == (1, 1)
    assert close_to(decoded_marks(tmp_path / "v.mp4"), [60])


def test_badly_exposed_frames_are_skipped_as_unusable(
    tmp_path: Path, camera: SyntheticCamera
) -> None:
    store = Store(tmp_path / "data", min_free_bytes=0)
    add(store, camera, T0, 60)
    add(store, camera, T0 + timedelta(hours=1), 120, verdict="over", luma=240)
    result = make_timelapse(store, T0, T0 + timedelta(hours=2), tmp_path / "v.mp4")
    assert (result.frames, result.skipped_unusable) == (1, 1)


def test_one_frame_per_day_is_the_first_usable_capture_of_each_day(
    tmp_path: Path, camera: SyntheticCamera
) -> None:
    store = Store(tmp_path / "data", min_free_bytes=0)
    for day in range(3):
        for hour in range(4):
            # Day 1 opens with a lights-off frame: its second capture stands in.
            dark = day == 1 and hour == 0
            add(
                store,
                camera,
                T0 + timedelta(days=day, hours=hour),
                40 + 60 * day + 10 * hour,
                luma=3 if dark else 90,
                light=0.05 if dark else 1.0,
            )
    out = tmp_path / "daily.mp4"
    result = make_timelapse(store, T0, T0 + timedelta(days=3), out, per="day")
    assert result.frames == 3 and result.skipped_dark == 1
    got = decoded_marks(out)
    assert close_to(got, [40, 110, 160]), got


def test_corrupt_and_missing_photos_are_skipped_and_counted(
    tmp_path: Path, camera: SyntheticCamera
) -> None:
    store = Store(tmp_path / "data", min_free_bytes=0)
    good = add(store, camera, T0, 80)
    truncated = add(store, camera, T0 + timedelta(hours=1), 120)
    garbage = add(store, camera, T0 + timedelta(hours=2), 160)
    missing = add(store, camera, T0 + timedelta(hours=3), 200)
    last = add(store, camera, T0 + timedelta(hours=4), 240)
    for seq, data in ((truncated, None), (garbage, b"\xff\xd8\xff" + b"\x00" * 500)):
        path = store.image_path(seq)
        assert path is not None
        path.write_bytes(data if data is not None else path.read_bytes()[:600])
    missing_path = store.image_path(missing)
    assert missing_path is not None
    missing_path.unlink()
    out = tmp_path / "v.mp4"
    result = make_timelapse(store, T0, T0 + timedelta(hours=5), out)
    assert (result.frames, result.skipped_corrupt, result.skipped_missing) == (2, 2, 1)
    assert any(f"seq {truncated}" in p for p in result.problems)
    assert good and last
    assert close_to(decoded_marks(out), [80, 240])


def test_an_empty_range_is_an_error_naming_the_range(
    tmp_path: Path, camera: SyntheticCamera
) -> None:
    store = Store(tmp_path / "data", min_free_bytes=0)
    add(store, camera, T0, 80)
    out = tmp_path / "v.mp4"
    later = T0 + timedelta(days=10)
    with pytest.raises(TimelapseError, match="no photos are stored between 2026-03-12"):
        make_timelapse(store, later, later + timedelta(days=1), out)
    assert not out.exists() and not list(tmp_path.glob(".tmp-*"))


def test_a_range_of_only_dark_frames_says_how_many_were_skipped(
    tmp_path: Path, camera: SyntheticCamera
) -> None:
    store = Store(tmp_path / "data", min_free_bytes=0)
    for h in range(3):
        add(store, camera, T0 + timedelta(hours=h), 80, luma=2, verdict="under", light=0.02)
    with pytest.raises(TimelapseError, match=r"no usable frame among 3 photos.*3 dark"):
        make_timelapse(store, T0, T0 + timedelta(hours=3), tmp_path / "v.mp4")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"out": "v.avi"}, "must end in .mp4 or .webm"),
        ({"per": "week"}, "per must be"),
        ({"fps": 0}, "fps must be"),
        ({"end": T0 - timedelta(days=1)}, "is before start"),
    ],
)
def test_bad_arguments_are_refused_with_a_reason(
    tmp_path: Path, kwargs: dict[str, object], match: str
) -> None:
    store = Store(tmp_path / "data", min_free_bytes=0)
    args: dict[str, object] = {"start": T0, "end": T0 + timedelta(days=1), "out": "v.mp4"}
    args.update(kwargs)
    out = tmp_path / str(args.pop("out"))
    with pytest.raises(TimelapseError, match=match):
        make_timelapse(store, out=out, **args)  # type: ignore[arg-type]


def test_webm_is_written_with_vp8_when_asked(tmp_path: Path, camera: SyntheticCamera) -> None:
    store = Store(tmp_path / "data", min_free_bytes=0)
    for h in range(3):
        add(store, camera, T0 + timedelta(hours=h), 60 + 60 * h)
    result = make_timelapse(store, T0, T0 + timedelta(hours=3), tmp_path / "v.webm")
    assert result.codec == "VP80"
    assert close_to(decoded_marks(tmp_path / "v.webm"), [60, 120, 180])


def test_day_range_covers_both_whole_days_and_names_a_bad_date() -> None:
    start, end = day_range("2026-03-02", "2026-03-03", timezone.utc)
    assert start == datetime(2026, 3, 2, tzinfo=timezone.utc)
    assert end.date().isoformat() == "2026-03-03" and end.hour == 23
    with pytest.raises(TimelapseError, match="--from '2026-13-01' is not a date"):
        day_range("2026-13-01", "2026-03-03", timezone.utc)
    with pytest.raises(TimelapseError, match="is before --from"):
        day_range("2026-03-03", "2026-03-01", timezone.utc)


def test_cli_writes_the_video_and_prints_what_it_skipped(
    tmp_path: Path, camera: SyntheticCamera, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    store = Store(data, min_free_bytes=0)
    add(store, camera, T0, 80)
    add(store, camera, T0 + timedelta(hours=1), 0, luma=1, verdict="under", light=0.01)
    add(store, camera, T0 + timedelta(days=1), 160)
    store.close()
    config = tmp_path / "edge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "device": {"id": "cli-cam"},
                "camera": {"backend": "synthetic"},
                "storage": {"dir": str(data), "min_free_mb": 0},
                "model": {"enabled": False},
                "schedule": {"timezone": "UTC"},
            }
        )
    )
    out = tmp_path / "grow.mp4"
    argv = ["timelapse", "--config", str(config), "--from", "2026-03-02", "--to", "2026-03-03"]
    assert main([*argv, "--per", "day", str(out)]) == 0
    assert "2 frames" in capsys.readouterr().out
    assert close_to(decoded_marks(out), [80, 160])
    assert main([*argv[:3], "--from", "2027-01-01", "--to", "2027-01-02", str(out)]) == 1
    assert "no photos are stored between 2027-01-01" in capsys.readouterr().err


def test_rows_read_in_small_pages_are_each_used_once_even_at_equal_times(
    tmp_path: Path, camera: SyntheticCamera, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(timelapse, "ROW_BATCH", 2)
    store = Store(tmp_path / "data", min_free_bytes=0)
    times = [0, 1, 1, 1, 2]  # three captures at the same instant straddle a page edge
    for i, h in enumerate(times):
        add(store, camera, T0 + timedelta(hours=h), 40 + 40 * i)
    result = make_timelapse(store, T0, T0 + timedelta(hours=2), tmp_path / "v.mp4")
    assert result.frames == 5
    assert close_to(decoded_marks(tmp_path / "v.mp4"), [40, 80, 120, 160, 200])


def test_a_photo_of_another_size_is_fitted_into_the_first_frame_size(
    tmp_path: Path, camera: SyntheticCamera, clock: FakeClock
) -> None:
    store = Store(tmp_path / "data", min_free_bytes=0)
    add(store, camera, T0, 80)
    small = SyntheticCamera(SyntheticCameraSettings(width=96, height=72, seed=3), clock)
    add(store, small, T0 + timedelta(hours=1), 160)
    add(store, camera, T0 + timedelta(hours=2), 240)
    out = tmp_path / "v.mp4"
    result = make_timelapse(store, T0, T0 + timedelta(hours=2), out)
    assert (result.frames, result.width, result.height) == (3, W, H)
    assert len(decoded_marks(out)) == 3  # every frame decodes at W x H


def test_an_output_folder_that_does_not_exist_is_named(tmp_path: Path) -> None:
    store = Store(tmp_path / "data", min_free_bytes=0)
    with pytest.raises(TimelapseError, match=r"folder .*nowhere does not exist"):
        make_timelapse(store, T0, T0 + timedelta(days=1), tmp_path / "nowhere" / "v.mp4")

"""A grey card whose position is in config sets the white balance: validated, and it helps."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import pytest

from edge.camera.base import Frame
from edge.camera.growroom import GREY_CARD, SceneSpec, render_scene
from edge.config import EdgeConfig
from edge.errors import ConfigError
from edge.observe import Observer
from edge.protocol import ModelBlock
from tests.conftest import make_config

# A warm-white LED: warmer than the photo light, far less amber than HPS. Read from the
# frame it passes for HPS, whose correction then turns the chlorotic leaves green again.
WARM_LED = (1.0, 0.9, 0.75)


def _problems(tmp_path: Path, card: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        make_config(tmp_path, vision={"white_reference": card})
    return info.value.problems


def test_a_card_inside_the_frame_is_accepted(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, vision={"white_reference": [0.02, 0.02, 0.08, 0.1]})
    assert cfg.vision.white_reference == (0.02, 0.02, 0.08, 0.1)
    assert make_config(tmp_path).vision.white_reference is None


@pytest.mark.parametrize(
    ("card", "said"),
    [
        ([0.95, 0.1, 0.1, 0.1], "inside the frame"),
        ([0.1, 0.95, 0.1, 0.1], "inside the frame"),
        ([-0.1, 0.1, 0.1, 0.1], "fractions of the frame"),
        ([0.1, 0.1, 0.001, 0.1], "at least 0.01"),
        ([0.1, 0.1, 0.1], "vision.white_reference"),
        ("top left", "vision.white_reference"),
    ],
)
def test_a_card_outside_the_frame_is_refused_naming_the_field(
    tmp_path: Path, card: Any, said: str
) -> None:
    problems = _problems(tmp_path, card)
    assert any("vision.white_reference" in p and said in p for p in problems), problems


def _measure(config: EdgeConfig, rgb: Any) -> Any:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    h, w = rgb.shape[:2]
    frame = Frame(datetime.now(timezone.utc), w, h, jpeg=buf.tobytes(), source="test")
    return Observer(config, None, ModelBlock(error="off")).measure(frame).analysis.canopy


def test_a_tinted_scene_with_a_grey_card_is_corrected_better_with_it(tmp_path: Path) -> None:
    spec = SceneSpec("wood", "white", chlorotic_share=0.3, grey_card=True, tint=WARM_LED)
    scene = render_scene(spec)
    under_white = render_scene(SceneSpec("wood", "white", chlorotic_share=0.3, grey_card=True))
    plain = make_config(tmp_path)
    carded = make_config(tmp_path, vision={"white_reference": list(GREY_CARD)})

    white = _measure(plain, under_white.rgb)
    guessed = _measure(plain, scene.rgb)
    measured = _measure(carded, scene.rgb)
    assert measured.light == "reference"
    assert guessed.yellow_pct is not None and measured.yellow_pct is not None
    assert abs(measured.yellow_pct - scene.yellow_pct) <= 2.0
    assert abs(measured.yellow_pct - scene.yellow_pct) < abs(guessed.yellow_pct - scene.yellow_pct)
    assert guessed.hue_mean_deg is not None and measured.hue_mean_deg is not None
    assert white.hue_mean_deg is not None
    # The canopy's colour comes out as it is under white light.
    assert abs(measured.hue_mean_deg - white.hue_mean_deg) < abs(
        guessed.hue_mean_deg - white.hue_mean_deg
    )
    assert abs(measured.cover_pct - scene.cover_pct) <= 3.0

"""Canopy analysis on grow-room scenes with exact truth: backgrounds, lamps, shade, real leaves."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.camera.growroom import (
    GREY_CARD,
    LAMPS,
    REAL_LEAF_SCENES,
    SCENE_TYPES,
    Scene,
    SceneSpec,
    cut_out_leaf,
    render_scene,
)
from edge.vision import Analysis, analyze
from edge.vision.background import BackgroundModel
from edge.vision.decode import decode_for_analysis, fit_within

SEEDS = (0, 1, 2)


def as_analysed(rgb: np.ndarray) -> np.ndarray:
    """The image the agent measures: a JPEG (quality 90) decoded at 640 px."""
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90]
    )
    assert ok
    return decode_for_analysis(buf.tobytes(), 640)[0]


def measure(scene: Scene, **kwargs: object) -> Analysis:
    """Analyse a scene the way the agent does."""
    return analyze(as_analysed(scene.rgb), **kwargs)  # type: ignore[arg-type]


def check_against_truth(scene: Scene, a: Analysis) -> None:
    """Cover within 3 points, yellow within 2 points, under 2 % on healthy scenes."""
    assert abs(a.canopy.cover_pct - scene.cover_pct) <= 3.0
    if a.canopy.colour_reason is not None:
        assert a.canopy.yellow_pct is None and a.canopy.brown_pct is None
        return
    assert a.canopy.yellow_pct is not None
    assert abs(a.canopy.yellow_pct - scene.yellow_pct) <= 2.0
    if scene.spec.chlorotic_share == 0:
        assert a.canopy.yellow_pct < 2.0


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", sorted(SCENE_TYPES))
def test_scene_cover_and_yellow_match_truth(name: str, seed: int) -> None:
    scene = render_scene(dataclasses.replace(SCENE_TYPES[name], seed=seed))
    check_against_truth(scene, measure(scene))


@pytest.mark.parametrize("name", sorted(SCENE_TYPES))
def test_the_lamp_is_recognised(name: str) -> None:
    spec = SCENE_TYPES[name]
    light = measure(render_scene(spec)).canopy.light
    assert light == ("narrow_band" if spec.lamp == "red_blue" else spec.lamp)


def test_narrow_band_light_leaves_colour_null_with_a_reason() -> None:
    a = measure(render_scene(SceneSpec("white_wall", "red_blue", chlorotic_share=0.4)))
    c = a.canopy
    assert c.yellow_pct is None and c.brown_pct is None and c.hue_mean_deg is None
    assert c.colour_reason is not None and "green" in c.colour_reason


def test_dark_photo_leaves_colour_null_with_a_reason() -> None:
    scene = render_scene(SceneSpec("cardboard", "white"))
    dark = (scene.rgb.astype(np.float32) * 0.12).astype(np.uint8)
    c = analyze(fit_within(dark, 640)).canopy
    assert c.yellow_pct is None and c.colour_reason == "photo too dark to judge leaf colour"


def test_beige_cardboard_is_not_chlorosis_even_without_white_balance() -> None:
    # The field failure: beige and wood behind healthy plants read as yellowing.
    for background in ("cardboard", "wood"):
        c = measure(render_scene(SceneSpec(background, "white", plants=4))).canopy
        assert c.yellow_pct is not None and c.yellow_pct < 1.0


def test_hps_amber_is_white_balanced_before_judging_yellow() -> None:
    spec = SceneSpec("white_wall", "hps", chlorotic_share=0.0)
    corrected = measure(render_scene(spec)).canopy
    assert corrected.light == "hps" and corrected.yellow_pct is not None
    assert corrected.yellow_pct < 2.0


def test_grey_card_measures_the_lamp_exactly() -> None:
    spec = SceneSpec("wood", "hps", chlorotic_share=0.3, grey_card=True)
    scene = render_scene(spec)
    a = measure(scene, white_reference=GREY_CARD)
    assert a.canopy.light == "reference"
    check_against_truth(scene, a)


def test_sticky_trap_is_chlorosis_until_the_background_is_known() -> None:
    spec = SceneSpec("white_wall", "white", sticky_trap=True, seed=3)
    scene = render_scene(spec)
    naive = measure(scene).canopy
    assert naive.yellow_pct is not None and naive.yellow_pct > 2.0  # the trap reads as leaf

    empty = render_scene(dataclasses.replace(spec, empty=True, frame=1))
    model = BackgroundModel()
    model.capture_empty(as_analysed(empty.rgb))
    check_against_truth(scene, measure(scene, background=model))


def test_background_is_learnt_from_the_first_captures_and_reset() -> None:
    spec = SceneSpec("white_wall", "white", sticky_trap=True, seed=3)
    model = BackgroundModel()
    for frame in range(5):
        measure(render_scene(dataclasses.replace(spec, frame=frame)), background=model)
    assert model.ready
    scene = render_scene(dataclasses.replace(spec, frame=9))
    check_against_truth(scene, measure(scene, background=model))
    model.reset()
    assert not model.ready
    after = measure(scene, background=model).canopy  # one frame: nothing learnt yet
    assert after.yellow_pct is not None and after.yellow_pct > 2.0


def test_background_model_ignores_a_frame_of_another_size() -> None:
    model = BackgroundModel()
    model.capture_empty(np.zeros((48, 64, 3), np.uint8))
    assert not model.matches(np.zeros((96, 128, 3), np.uint8)).any()


def test_deep_shade_dense_canopy_is_canopy() -> None:
    # The field failure: dark leaves filling the frame read as 12 % cover.
    scene = render_scene(SceneSpec("soil", "white", shade=0.85, plant_scale=2.2, plants=4))
    a = measure(scene)
    assert scene.cover_pct > 45
    assert abs(a.canopy.cover_pct - scene.cover_pct) <= 3.0


def test_every_lamp_has_a_scene_type() -> None:
    assert {s.lamp for s in SCENE_TYPES.values()} == set(LAMPS)


def _healthy_cut_outs(dataset: Path, limit: int = 24) -> tuple[np.ndarray, ...]:
    with open(dataset / "manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["class"] == "healthy"]
    cuts = []
    for row in rows[:: max(1, len(rows) // limit)][:limit]:
        bgr = cv2.imread(str(dataset / row["file"]))
        cut = cut_out_leaf(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if cut is not None:
            cuts.append(cut)
    assert len(cuts) >= limit // 2, "too few leaf photos could be cut out"
    return tuple(cuts)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", sorted(REAL_LEAF_SCENES))
def test_real_leaf_composites_match_truth(leaf_dataset: Path, name: str, seed: int) -> None:
    spec = dataclasses.replace(
        REAL_LEAF_SCENES[name], seed=seed, leaf_photos=_healthy_cut_outs(leaf_dataset)
    )
    scene = render_scene(spec)
    check_against_truth(scene, measure(scene))

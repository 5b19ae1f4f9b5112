"""Leaf temperature from a synthetic thermal frame; VPD against reference tables."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.leaftemp import leaf_temperature
from edge.sensors.fakes import leaf_share_in_thermal
from edge.sensors.settings import RegistrationSettings
from edge.vpd import air_vpd_kpa, leaf_vpd_kpa, saturation_vapour_pressure_kpa

LEAF_C, GROUND_C = 22.5, 28.0


def scene(reg: RegistrationSettings, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A plant mask at 480x640 and the thermal frame the array would see of it."""
    mask = np.zeros((480, 640), np.uint8)
    cv2.circle(mask, (220, 240), 110, 1, -1)
    cv2.ellipse(mask, (470, 200), (120, 70), 20, 0, 360, 1, -1)
    share = leaf_share_in_thermal(mask, reg)
    rng = np.random.default_rng(seed)
    thermal = GROUND_C + share * (LEAF_C - GROUND_C) + rng.normal(0, 0.2, share.shape)
    thermal[5, 5] = 60.0  # a hot lamp reflection somewhere
    return mask.astype(bool), thermal.astype(np.float32)


def test_leaf_temperature_is_the_leaf_not_a_mix_with_the_ground() -> None:
    reg = RegistrationSettings()
    mask, thermal = scene(reg)
    result = leaf_temperature(thermal, mask, reg)
    assert result.leaf_temp_c == pytest.approx(LEAF_C, abs=0.15)
    assert result.pixels >= 20
    # The plain mean of every pixel under the mask is pulled toward the ground.
    share = leaf_share_in_thermal(mask.astype(np.uint8), reg)
    naive = float(thermal[share > 0].mean())
    assert naive - LEAF_C > 0.5


def test_registration_with_a_narrower_camera_view_still_finds_the_leaves() -> None:
    # The camera sees the middle 60 % of the thermal frame, mirrored left-right.
    reg = RegistrationSettings(scale_x=-0.6, offset_x=0.8, scale_y=0.6, offset_y=0.2)
    mask, thermal = scene(reg)
    result = leaf_temperature(thermal, mask, reg)
    assert result.leaf_temp_c == pytest.approx(LEAF_C, abs=0.2)


def test_registration_that_is_off_gives_no_number() -> None:
    truth = RegistrationSettings()
    mask, thermal = scene(truth)
    wrong = RegistrationSettings(offset_x=0.9)  # the photo falls mostly outside the array
    result = leaf_temperature(thermal, mask, wrong)
    assert result.leaf_temp_c is None


def test_plants_too_small_for_the_array_give_no_number_and_a_reason() -> None:
    reg = RegistrationSettings()
    mask = np.zeros((480, 640), bool)
    mask[100:112, 100:112] = True  # smaller than one thermal pixel (20 x 20 camera pixels)
    thermal = np.full((24, 32), 25.0, np.float32)
    result = leaf_temperature(thermal, mask, reg)
    assert result.leaf_temp_c is None
    assert result.reason is not None and "needed" in result.reason


# Saturation vapour pressure over water, kPa (CRC Handbook / Wagner & Pruss IAPWS-95).
REFERENCE_ES = [
    (0.0, 0.6112),
    (10.0, 1.2282),
    (20.0, 2.3392),
    (25.0, 3.1699),
    (30.0, 4.2470),
    (40.0, 7.3849),
]


@pytest.mark.parametrize(("temp_c", "es_kpa"), REFERENCE_ES)
def test_saturation_vapour_pressure_matches_the_reference_table(
    temp_c: float, es_kpa: float
) -> None:
    assert saturation_vapour_pressure_kpa(temp_c) == pytest.approx(es_kpa, rel=1e-3)


def test_air_vpd_at_25c_and_50_percent() -> None:
    assert air_vpd_kpa(25.0, 50.0) == pytest.approx(3.1699 * 0.5, rel=1e-3)


def test_leaf_vpd_of_a_leaf_cooler_than_the_air() -> None:
    # Leaf 20 degC in air at 25 degC, 50 % RH: 2.3392 - 0.5 * 3.1699 = 0.754 kPa.
    assert leaf_vpd_kpa(20.0, 25.0, 50.0) == pytest.approx(0.7543, abs=0.003)


def test_leaf_vpd_equals_air_vpd_when_the_leaf_is_at_air_temperature() -> None:
    assert leaf_vpd_kpa(24.0, 24.0, 65.0) == pytest.approx(air_vpd_kpa(24.0, 65.0))


@pytest.mark.parametrize(("temp", "rh"), [(25.0, 120.0), (25.0, -1.0), (150.0, 50.0)])
def test_vpd_of_impossible_input_says_which(temp: float, rh: float) -> None:
    with pytest.raises(ValueError, match="outside"):
        air_vpd_kpa(temp, rh)


def test_registration_is_recovered_from_a_photo_and_its_thermal_frame() -> None:
    from edge.leaftemp import fit_registration

    truth = RegistrationSettings(scale_x=0.6, offset_x=0.22, scale_y=0.65, offset_y=0.17)
    mask, thermal = scene(truth)
    fit = fit_registration(thermal, mask)
    r = fit.registration
    assert fit.correlation > 0.8
    for name in ("scale_x", "scale_y", "offset_x", "offset_y"):
        assert getattr(r, name) == pytest.approx(getattr(truth, name), abs=0.04), name
    fitted = RegistrationSettings(**{**r.model_dump(), "erode_px": truth.erode_px})
    assert leaf_temperature(thermal, mask, fitted).leaf_temp_c == pytest.approx(LEAF_C, abs=0.3)


def test_registration_needs_plants_and_substrate() -> None:
    from edge.leaftemp import fit_registration

    with pytest.raises(ValueError, match="plants and substrate"):
        fit_registration(np.full((24, 32), 25.0, np.float32), np.zeros((48, 64), bool))

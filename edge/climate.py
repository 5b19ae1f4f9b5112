"""One capture's climate block: sensor readings, leaf temperature from the mask, VPD."""

from __future__ import annotations

import numpy as np

from edge.leaftemp import leaf_temperature
from edge.protocol import ClimateBlock
from edge.sensors import SensorReadings, SensorsConfig
from edge.vpd import air_vpd_kpa, leaf_vpd_kpa


def climate_block(
    readings: SensorReadings, plant_mask: np.ndarray | None, config: SensorsConfig
) -> ClimateBlock:
    """Combine the readings with the photo's plant mask into the observation's block."""
    leaf_c = pixels = reason = None
    if readings.thermal is not None:
        if plant_mask is None or not plant_mask.any():
            reason = "no plant in the photo to take a leaf temperature from"
        else:
            leaf = leaf_temperature(readings.thermal, plant_mask, config.registration)
            leaf_c, pixels, reason = leaf.leaf_temp_c, leaf.pixels, leaf.reason
    t, rh = readings.air_temp_c, readings.rh_pct
    air_vpd = leaf_vpd = None
    if t is not None and rh is not None:
        air_vpd = round(air_vpd_kpa(t, rh), 3)
        if leaf_c is not None:
            leaf_vpd = round(leaf_vpd_kpa(leaf_c, t, rh), 3)
    target = config.vpd.target()
    return ClimateBlock(
        air_temp_c=None if t is None else round(t, 2),
        rh_pct=None if rh is None else round(rh, 2),
        co2_ppm=readings.co2_ppm,
        leaf_temp_c=leaf_c,
        leaf_temp_pixels=pixels,
        leaf_temp_reason=reason,
        air_vpd_kpa=air_vpd,
        leaf_vpd_kpa=leaf_vpd,
        stage=config.vpd.stage,
        vpd_low_kpa=target[0] if target else None,
        vpd_high_kpa=target[1] if target else None,
        sensors=readings.status,
    )

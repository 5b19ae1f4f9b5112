"""Vapour pressure deficit (VPD) of the air and of the leaves, in kPa.

Saturation vapour pressure over water from Buck's 1981 equation (the "Buck (1996)"
form of his coefficients): within 0.05 % of the reference tables from 0 to 50 degC.
Leaf VPD takes the leaf as saturated at its own temperature, against the air's
actual vapour pressure: es(T_leaf) - es(T_air) * RH / 100.
"""

from __future__ import annotations

import math


def saturation_vapour_pressure_kpa(temp_c: float) -> float:
    """Saturation vapour pressure over liquid water at `temp_c`, kPa (Buck)."""
    if not -40.0 <= temp_c <= 80.0:
        raise ValueError(f"temperature {temp_c} degC is outside -40..80 degC")
    return 0.61121 * math.exp((18.678 - temp_c / 234.5) * (temp_c / (257.14 + temp_c)))


def air_vpd_kpa(air_temp_c: float, rh_pct: float) -> float:
    """VPD of the air itself: es(T_air) * (1 - RH/100)."""
    _check_rh(rh_pct)
    return saturation_vapour_pressure_kpa(air_temp_c) * (1.0 - rh_pct / 100.0)


def leaf_vpd_kpa(leaf_temp_c: float, air_temp_c: float, rh_pct: float) -> float:
    """VPD between the leaf's inside and the air: what drives transpiration."""
    _check_rh(rh_pct)
    actual = saturation_vapour_pressure_kpa(air_temp_c) * rh_pct / 100.0
    return saturation_vapour_pressure_kpa(leaf_temp_c) - actual


def _check_rh(rh_pct: float) -> None:
    if not 0.0 <= rh_pct <= 100.0:
        raise ValueError(f"relative humidity {rh_pct} % is outside 0..100 %")

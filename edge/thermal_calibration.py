"""`cultivai-edge calibrate-thermal`: fit the thermal-to-photo registration from one capture."""

from __future__ import annotations

from edge.camera import open_camera
from edge.clock import SystemClock
from edge.config import EdgeConfig
from edge.errors import CultivaiError
from edge.leaftemp import RegistrationFit, fit_registration
from edge.observe import Observer
from edge.protocol import ModelBlock
from edge.sensors import SensorError, SensorHub

MIN_CORRELATION = 0.5  # below this the fit is a guess: say so instead of suggesting it


def calibrate_thermal(config: EdgeConfig) -> RegistrationFit:
    """Take one photo and one thermal frame and fit where the photo lies in the frame."""
    if config.sensors.thermal is None:
        raise SensorError("no thermal sensor configured (sensors.thermal)")
    camera = open_camera(config.camera, SystemClock())
    hub = SensorHub(config.sensors)
    try:
        frame = camera.capture()
        measured = Observer(config, None, ModelBlock()).measure(frame)
        readings = hub.read(frame.truth_mask)
    finally:
        hub.close()
        camera.close()
    if readings.thermal is None:
        raise SensorError(f"no thermal frame: {readings.status.get('thermal', 'unknown')}")
    try:
        return fit_registration(readings.thermal, measured.analysis.plant_mask)
    except ValueError as exc:
        raise CalibrationError(str(exc)) from exc


class CalibrationError(CultivaiError, ValueError):
    """The photo and thermal frame could not be lined up."""


def suggestion(fit: RegistrationFit) -> str:
    """The config lines to paste, or why the fit is not good enough to use."""
    r = fit.registration
    lines = [
        f"# correlation of plant mask and thermal frame: {fit.correlation:.2f}",
        "sensors:",
        "  registration:",
        f"    {{scale_x: {r.scale_x}, offset_x: {r.offset_x}, "
        f"scale_y: {r.scale_y}, offset_y: {r.offset_y}}}",
    ]
    if fit.correlation < MIN_CORRELATION:
        lines.insert(
            0,
            "# weak fit: leaves and substrate differ too little in temperature, or the "
            "photo is not inside the thermal view; try with the lights on for a while",
        )
    return "\n".join(lines)

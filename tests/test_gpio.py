"""GPIO devices on gpiozero's MockFactory: photo light, status LED patterns, button."""

from __future__ import annotations

import time
from typing import Any

import pytest

from edge.config import GpioConfig
from edge.errors import GpioError
from edge.gpio import Gpio


def transitions(pin: Any, timeout: float = 5.0, want: int = 4) -> int:
    """How many state changes the pin has recorded, waiting up to `timeout` for `want`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(pin.states) - 1 < want:
        time.sleep(0.05)
    return len(pin.states) - 1


def test_nothing_is_set_up_without_pins() -> None:
    gpio = Gpio(GpioConfig())
    assert gpio.photo_light is None and gpio.status_led is None and gpio.button is None
    with gpio.lit_for_capture():
        pass


def test_photo_light_waits_to_settle_and_switches_off_after(mock_factory: Any) -> None:
    slept: list[float] = []
    gpio = Gpio(
        GpioConfig(photo_light_pin=17, photo_light_settle_s=0.7),
        pin_factory=mock_factory,
        sleep=slept.append,
    )
    pin = mock_factory.pin(17)
    with gpio.lit_for_capture():
        assert pin.state == 1
        assert slept == [0.7]
    assert pin.state == 0
    gpio.close()


def test_photo_light_goes_off_even_when_the_capture_fails(mock_factory: Any) -> None:
    gpio = Gpio(GpioConfig(photo_light_pin=17), pin_factory=mock_factory, sleep=lambda s: None)
    with pytest.raises(RuntimeError), gpio.lit_for_capture():
        raise RuntimeError("camera fell over")
    assert mock_factory.pin(17).state == 0


def test_active_low_relay(mock_factory: Any) -> None:
    gpio = Gpio(
        GpioConfig(photo_light_pin=17, photo_light_active_high=False),
        pin_factory=mock_factory,
        sleep=lambda s: None,
    )
    pin = mock_factory.pin(17)
    assert pin.state == 1  # off
    with gpio.lit_for_capture():
        assert pin.state == 0
    gpio.close()


def test_status_led_ok_is_steady_error_blinks(mock_factory: Any) -> None:
    gpio = Gpio(GpioConfig(status_led_pin=5), pin_factory=mock_factory)
    pin = mock_factory.pin(5)
    gpio.set_status("ok")
    assert pin.state == 1
    pin.clear_states()
    gpio.set_status("error")
    assert transitions(pin) >= 4
    gpio.set_status("ok")
    assert pin.state == 1
    gpio.close()


def test_button_press_calls_back(mock_factory: Any) -> None:
    gpio = Gpio(GpioConfig(button_pin=26), pin_factory=mock_factory)
    pressed: list[bool] = []
    gpio.on_button(lambda: pressed.append(True))
    mock_factory.pin(26).drive_low()
    mock_factory.pin(26).drive_high()
    assert pressed == [True]
    gpio.close()


def test_unusable_pin_factory_is_a_clear_error() -> None:
    with pytest.raises(GpioError, match="pin_factory 'rpigpio'"):
        Gpio(GpioConfig(pin_factory="rpigpio", status_led_pin=5))


def test_same_pin_twice_is_a_clear_error(mock_factory: Any) -> None:
    with pytest.raises(GpioError, match="GPIO setup failed"):
        Gpio(GpioConfig(status_led_pin=5, button_pin=5), pin_factory=mock_factory)

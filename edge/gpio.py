"""Optional GPIO wiring: a photo light, a status LED and a capture button.

Grow lights (red/blue LED, amber HPS) distort colour, so a neutral photo light can
be switched on for each capture, with a settle delay. Every device takes the pin
factory it is handed; tests hand in gpiozero's MockFactory.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

from edge.config import GpioConfig
from edge.errors import GpioError

Status = Literal["ok", "degraded", "error", "off"]

# (on seconds, off seconds) of the status LED; None means steadily on.
LED_PATTERNS: dict[Status, tuple[float, float] | None] = {
    "ok": None,
    "degraded": (1.0, 1.0),
    "error": (0.15, 0.15),
}


def make_pin_factory(name: str) -> Any:
    """The gpiozero pin factory a config names; None lets gpiozero choose ('auto')."""
    try:
        if name == "auto":
            return None
        if name == "mock":
            from gpiozero.pins.mock import MockFactory

            return MockFactory()
        if name == "lgpio":
            from gpiozero.pins.lgpio import LGPIOFactory

            return LGPIOFactory()
        if name == "rpigpio":
            from gpiozero.pins.rpigpio import RPiGPIOFactory

            return RPiGPIOFactory()
        if name == "pigpio":
            from gpiozero.pins.pigpio import PiGPIOFactory

            return PiGPIOFactory()
        from gpiozero.pins.native import NativeFactory

        return NativeFactory()
    except Exception as exc:  # gpiozero raises ImportError, BadPinFactory, OSError...
        raise GpioError(f"gpio.pin_factory {name!r} cannot be used here: {exc}") from exc


class Gpio:
    """The wired devices; pins left unset in the config are simply absent."""

    def __init__(
        self,
        config: GpioConfig,
        pin_factory: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self._sleep = sleep
        self.photo_light: Any = None
        self.status_led: Any = None
        self.button: Any = None
        self.status: Status = "off"
        if not config.any_pin:
            return
        try:
            from gpiozero import LED, Button, DigitalOutputDevice

            factory = (
                pin_factory if pin_factory is not None else make_pin_factory(config.pin_factory)
            )
            if config.photo_light_pin is not None:
                self.photo_light = DigitalOutputDevice(
                    config.photo_light_pin,
                    active_high=config.photo_light_active_high,
                    initial_value=False,
                    pin_factory=factory,
                )
            if config.status_led_pin is not None:
                self.status_led = LED(config.status_led_pin, pin_factory=factory)
            if config.button_pin is not None:
                self.button = Button(config.button_pin, bounce_time=0.05, pin_factory=factory)
        except GpioError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise GpioError(f"GPIO setup failed: {exc}") from exc

    @contextlib.contextmanager
    def lit_for_capture(self) -> Iterator[None]:
        """Photo light on (and settled) for the duration of the block, off after."""
        if self.photo_light is None:
            yield
            return
        self.photo_light.on()
        try:
            self._sleep(self.config.photo_light_settle_s)
            yield
        finally:
            self.photo_light.off()

    def set_status(self, status: Status) -> None:
        """Show ok (steady), degraded (slow blink) or error (fast blink) on the LED."""
        if status == self.status:
            return
        self.status = status
        if self.status_led is None:
            return
        if status == "off":
            self.status_led.off()
            return
        pattern = LED_PATTERNS[status]
        if pattern is None:
            self.status_led.on()
        else:
            self.status_led.blink(on_time=pattern[0], off_time=pattern[1], background=True)

    def on_button(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the capture button is pressed."""
        if self.button is not None:
            self.button.when_pressed = lambda *_: callback()

    def close(self) -> None:
        """Switch everything off and release the pins."""
        for device in (self.photo_light, self.status_led, self.button):
            if device is not None:
                with contextlib.suppress(Exception):
                    device.close()

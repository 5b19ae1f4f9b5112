"""I2C buses: smbus2 on a device (imported only when opened), a scripted bus for tests."""

from __future__ import annotations

import errno
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.sensors.base import SensorError


class SMBus2Bus:
    """A Linux I2C bus (/dev/i2c-N) through smbus2's combined transactions."""

    def __init__(self, bus: int) -> None:
        try:
            import smbus2
        except ImportError as exc:
            raise SensorError(
                "I2C sensors need the smbus2 package: pip install 'cultivai-edge[sensors]'"
            ) from exc
        self._msg: Any = smbus2.i2c_msg
        try:
            self._bus: Any = smbus2.SMBus(bus)
        except OSError as exc:
            raise SensorError(
                f"cannot open /dev/i2c-{bus}: {exc.strerror or exc} (is I2C enabled, "
                "and is the agent's user in the i2c group?)"
            ) from exc

    def write(self, address: int, data: bytes) -> None:
        """One write message."""
        self._bus.i2c_rdwr(self._msg.write(address, list(data)))

    def read(self, address: int, length: int) -> bytes:
        """One read message."""
        msg = self._msg.read(address, length)
        self._bus.i2c_rdwr(msg)
        return bytes(msg)

    def write_read(self, address: int, data: bytes, length: int) -> bytes:
        """Write and read with a repeated start."""
        out, back = self._msg.write(address, list(data)), self._msg.read(address, length)
        self._bus.i2c_rdwr(out, back)
        return bytes(back)

    def close(self) -> None:
        """Close the bus device."""
        self._bus.close()


def _nack(address: int) -> OSError:
    # What the Linux I2C drivers report when no device acknowledges its address.
    return OSError(errno.EREMOTEIO, f"no device answers at 0x{address:02X}")


@dataclass
class ScriptedBus:
    """A fake bus replaying canned responses, keyed by address and the bytes written.

    `responses[address][written]` is what a read after writing `written` returns, so
    a test scripts a datasheet's example transaction byte for byte. Addresses not in
    `responses` do not acknowledge, like an empty socket. Every write is recorded.
    """

    responses: Mapping[int, Mapping[bytes, bytes]]
    writes: list[tuple[int, bytes]] = field(default_factory=list)
    _last: dict[int, bytes] = field(default_factory=dict)

    def write(self, address: int, data: bytes) -> None:
        """Record a write; it selects the response of the next read."""
        if address not in self.responses:
            raise _nack(address)
        self.writes.append((address, bytes(data)))
        self._last[address] = bytes(data)

    def read(self, address: int, length: int) -> bytes:
        """The scripted response to the last write, cut to `length`."""
        if address not in self.responses:
            raise _nack(address)
        script = self.responses[address]
        last = self._last.get(address, b"")
        if last not in script:
            raise OSError(errno.EIO, f"0x{address:02X}: no scripted answer to {last.hex()}")
        return script[last][:length].ljust(length, b"\xff")

    def write_read(self, address: int, data: bytes, length: int) -> bytes:
        """Write then read."""
        self.write(address, data)
        return self.read(address, length)

    def close(self) -> None:
        """Nothing to release."""

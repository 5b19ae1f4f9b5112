"""A disk with a volatile write cache, served to QEMU over NBD: a power cut loses writes.

SIGKILL of QEMU keeps every write that reached the host's page cache, which is kinder
than a real power cut. This NBD server holds each write in memory until the guest
flushes (or writes with FUA), as a disk's write cache does; `power_cut()` then keeps a
random subset of the unflushed writes and drops the rest, so the file systems and the
database see the torn and reordered writes a real SD card can leave. What a flush
acknowledged is always kept.

Only the parts of the protocol QEMU's client uses are spoken: fixed newstyle handshake,
NBD_OPT_GO / EXPORT_NAME, and READ, WRITE, FLUSH, TRIM, WRITE_ZEROES, DISC with simple
replies.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import threading
from pathlib import Path

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY = 0x67446698
OPT_EXPORT_NAME, OPT_ABORT, OPT_INFO, OPT_GO = 1, 2, 6, 7
REP_ACK, REP_INFO, REP_ERR_UNSUP = 1, 3, (1 << 31) + 1
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM, CMD_WRITE_ZEROES = 0, 1, 2, 3, 4, 6
CMD_FLAG_FUA = 1
# HAS_FLAGS | SEND_FLUSH | SEND_FUA | SEND_TRIM | SEND_WRITE_ZEROES
TRANSMISSION_FLAGS = 1 | 4 | 8 | 32 | 64
SECTOR = 512
EINVAL = 22


def _recv(conn: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("client went away")
        buf += chunk
    return bytes(buf)


class VolatileDisk:
    """A raw image file behind an NBD socket; writes are durable only once flushed."""

    def __init__(self, image: Path, socket_path: Path, seed: int = 0) -> None:
        self.image = image
        self.socket_path = socket_path
        self.size = image.stat().st_size
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        # sector -> latest unflushed data, and the writes in order (for a torn cut).
        self.cache: dict[int, bytes] = {}
        self.writes: list[tuple[int, bytes]] = []
        self.fd = os.open(image, os.O_RDWR)
        self.flushes = 0
        self.dropped = 0
        self.kept = 0
        socket_path.unlink(missing_ok=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(socket_path))
        self.listener.listen(1)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def drive(self) -> str:
        """The QEMU -drive value for this disk."""
        return f"file=nbd+unix:///?socket={self.socket_path},format=raw,if=virtio,cache=writeback"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                try:
                    if self._handshake(conn):
                        self._transmission(conn)
                except (ConnectionError, OSError):
                    pass

    def _handshake(self, conn: socket.socket) -> bool:
        conn.sendall(struct.pack(">QQH", NBDMAGIC, IHAVEOPT, 1 | 2))  # FIXED_NEWSTYLE|NO_ZEROES
        (client_flags,) = struct.unpack(">I", _recv(conn, 4))
        no_zeroes = bool(client_flags & 2)
        while True:
            magic, opt, length = struct.unpack(">QII", _recv(conn, 16))
            if magic != IHAVEOPT:
                return False
            data = _recv(conn, length)
            if opt == OPT_EXPORT_NAME:
                conn.sendall(struct.pack(">QH", self.size, TRANSMISSION_FLAGS))
                if not no_zeroes:
                    conn.sendall(b"\0" * 124)
                return True
            if opt in (OPT_GO, OPT_INFO):
                info = struct.pack(">HQH", 0, self.size, TRANSMISSION_FLAGS)
                conn.sendall(struct.pack(">QIII", REPLY_MAGIC, opt, REP_INFO, len(info)) + info)
                conn.sendall(struct.pack(">QIII", REPLY_MAGIC, opt, REP_ACK, 0))
                if opt == OPT_GO:
                    return True
                continue
            if opt == OPT_ABORT:
                conn.sendall(struct.pack(">QIII", REPLY_MAGIC, opt, REP_ACK, 0))
                return False
            del data
            conn.sendall(struct.pack(">QIII", REPLY_MAGIC, opt, REP_ERR_UNSUP, 0))

    def _reply(self, conn: socket.socket, handle: int, error: int = 0, data: bytes = b"") -> None:
        conn.sendall(struct.pack(">IIQ", SIMPLE_REPLY, error, handle) + data)

    def _transmission(self, conn: socket.socket) -> None:
        while True:
            magic, flags, kind, handle, offset, length = struct.unpack(">IHHQQI", _recv(conn, 28))
            if magic != REQUEST_MAGIC:
                return
            if kind == CMD_WRITE:
                data = _recv(conn, length)
            if kind == CMD_DISC:
                return
            if offset + length > self.size and kind != CMD_FLUSH:
                self._reply(conn, handle, EINVAL)
                continue
            with self.lock:
                if kind == CMD_READ:
                    self._reply(conn, handle, 0, self._read(offset, length))
                    continue
                if kind == CMD_WRITE:
                    self._write(offset, data, durable=bool(flags & CMD_FLAG_FUA))
                elif kind in (CMD_TRIM, CMD_WRITE_ZEROES):
                    self._write(offset, b"\0" * length, durable=bool(flags & CMD_FLAG_FUA))
                elif kind == CMD_FLUSH:
                    self._flush()
            self._reply(conn, handle)

    def _read(self, offset: int, length: int) -> bytes:
        data = bytearray(os.pread(self.fd, length, offset).ljust(length, b"\0"))
        if self.cache:
            first, last = offset // SECTOR, (offset + length - 1) // SECTOR
            for s in range(first, last + 1):
                cached = self.cache.get(s)
                if cached is None:
                    continue
                start = s * SECTOR
                lo, hi = max(start, offset), min(start + SECTOR, offset + length)
                data[lo - offset : hi - offset] = cached[lo - start : hi - start]
        return bytes(data)

    def _write(self, offset: int, data: bytes, durable: bool) -> None:
        first = offset // SECTOR
        end = offset + len(data)
        last = (end - 1) // SECTOR
        # Whole sectors: merge a partial first/last sector with what is there now.
        head = self._read(first * SECTOR, (last - first + 1) * SECTOR)
        merged = bytearray(head)
        merged[offset - first * SECTOR : end - first * SECTOR] = data
        if durable:
            os.pwrite(self.fd, bytes(merged), first * SECTOR)
            for s in range(first, last + 1):
                self.cache.pop(s, None)
            self.writes = [(o, d) for o, d in self.writes if not first <= o // SECTOR <= last]
            return
        for i, s in enumerate(range(first, last + 1)):
            sector = bytes(merged[i * SECTOR : (i + 1) * SECTOR])
            self.cache[s] = sector
            self.writes.append((s * SECTOR, sector))

    def _flush(self) -> None:
        for s, data in self.cache.items():
            os.pwrite(self.fd, data, s * SECTOR)
        os.fsync(self.fd)
        self.cache.clear()
        self.writes.clear()
        self.flushes += 1

    def power_cut(self, keep: float = 0.5) -> tuple[int, int]:
        """Lose power: each unflushed sector write survives with probability `keep`.

        Returns (kept, dropped) sector writes. Call after QEMU was killed.
        """
        with self.lock:
            kept = dropped = 0
            for offset, data in self.writes:
                if self.rng.random() < keep:
                    os.pwrite(self.fd, data, offset)
                    kept += 1
                else:
                    dropped += 1
            os.fsync(self.fd)
            self.cache.clear()
            self.writes.clear()
            self.kept += kept
            self.dropped += dropped
            return kept, dropped

    def close(self) -> None:
        """Stop serving (the file keeps what was flushed)."""
        self.listener.close()
        os.close(self.fd)
        self.socket_path.unlink(missing_ok=True)

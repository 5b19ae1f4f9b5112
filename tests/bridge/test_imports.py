"""The bridge installs on a server without the device's dependencies."""

from __future__ import annotations

import subprocess
import sys

DEVICE_ONLY = ("cv2", "ai_edge_litert", "gpiozero", "edge.camera", "edge.config")


def test_the_bridge_does_not_import_device_only_modules() -> None:
    code = (
        "import sys, cloud_bridge.cli, cloud_bridge.service;"
        f"print([m for m in {DEVICE_ONLY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

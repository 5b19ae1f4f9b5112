"""The embedded demo configuration: synthetic camera, local SQLite, no broker."""

from __future__ import annotations

from pathlib import Path

from edge.config import EdgeConfig, config_from_data


def demo_config(data_dir: Path) -> EdgeConfig:
    """A config that runs anywhere: a canopy that grows a day per capture and yellows."""
    return config_from_data(
        {
            "device": {"id": "demo-cam-1", "site": "demo-farm", "room": "veg-room-1"},
            "camera": {
                "backend": "synthetic",
                "days_per_capture": 1.0,
                "start_day": 4,
                "yellowing_onset_day": 22,
                # Plants keep growing from where they were when the demo restarts.
                "state_file": str(data_dir / "synthetic-camera.json"),
            },
            "schedule": {"interval_s": 10},
            "storage": {"dir": str(data_dir), "image_quota_mb": 64, "min_free_mb": 50},
            "web": {"host": "127.0.0.1", "port": 8080},
            # Simulated climate sensors: leaves a couple of degrees below the air.
            "sensors": {
                "climate": {"model": "fake", "air_temp_c": 25.5, "rh_pct": 62.0},
                "co2": {"model": "fake", "co2_ppm": 850},
                "thermal": {"model": "fake", "leaf_c": 23.5, "background_c": 27.0},
                "vpd": {"stage": "veg"},
            },
            "logging": {"format": "text"},
        },
        env={},
        source="demo defaults",
    )

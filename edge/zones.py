"""Zones of a canopy photo: a fixed grid of leaf-scale tiles over the analysis image.

The grid is laid over the whole frame, not the plant's bounding box, so that on a fixed
camera a zone's name (row letter, column number) means the same place capture after
capture. Only tiles that are mostly plant become zones; the rest are skipped.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Tile:
    """One zone: where it is in the grid and in the analysis image."""

    row: int
    col: int
    y0: int
    y1: int
    x0: int
    x1: int
    plant_share: float

    @property
    def name(self) -> str:
        """The grower's name of the zone: B3 is the second row, third column."""
        return zone_name(self.row, self.col)


@dataclass(frozen=True, slots=True)
class Grid:
    """The grid shape and the tiles that hold enough plant."""

    rows: int
    cols: int
    tile_px: int
    tiles: tuple[Tile, ...]


def zone_name(row: int, col: int) -> str:
    """Row letter(s) then 1-based column: (0, 0) -> A1, (27, 4) -> AB5."""
    letters = ""
    n = row + 1
    while n:
        n, rem = divmod(n - 1, 26)
        letters = string.ascii_uppercase[rem] + letters
    return f"{letters}{col + 1}"


def tile_side(
    default_px: int,
    leaf_cm: float | None,
    px_per_cm: float | None,
    analysis_scale: float,
) -> int:
    """Tile side at analysis resolution: from leaf size and px_per_cm when both are known."""
    if leaf_cm is not None and px_per_cm is not None:
        return max(16, round(leaf_cm * px_per_cm * analysis_scale))
    return default_px


def _edges(length: int, tile: int) -> list[int]:
    # Even splits so no sliver tile is left at the border; cells stay close to `tile`.
    count = max(1, round(length / tile))
    return [round(i * length / count) for i in range(count + 1)]


def tile_plant_region(plant_mask: np.ndarray, tile_px: int, min_plant_share: float) -> Grid:
    """The zone grid of a boolean plant mask; tiles under `min_plant_share` plant are skipped."""
    h, w = plant_mask.shape[:2]
    ys, xs = _edges(h, tile_px), _edges(w, tile_px)
    # Plant pixels per cell from one integral image rather than a sum per tile.
    integral = np.pad(plant_mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    tiles = []
    for r in range(len(ys) - 1):
        for c in range(len(xs) - 1):
            y0, y1, x0, x1 = ys[r], ys[r + 1], xs[c], xs[c + 1]
            plant = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
            share = float(plant) / float((y1 - y0) * (x1 - x0))
            if share >= min_plant_share:
                tiles.append(Tile(r, c, y0, y1, x0, x1, round(share, 3)))
    return Grid(len(ys) - 1, len(xs) - 1, tile_px, tuple(tiles))

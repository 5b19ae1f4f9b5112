"""Zones of a canopy photo: a fixed grid of leaf-scale tiles over the analysis image.

The grid is laid over the whole frame, not the plant's bounding box, so that on a fixed
camera a zone's name (row letter, column number) means the same place capture after
capture. Only tiles that are mostly plant become zones; the rest are skipped.

Each zone costs one model invoke, so a fixed camera keeps the last assessment of every
zone (ZoneCache) and assesses again only the zones whose pixels changed.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

SIGNATURE_SIDE = 8  # a zone's signature: 8 x 8 block means per colour channel


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


def tile_signature(crop: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """Block means of a tile on an 8 x 8 grid: sensor noise averages out, a changed leaf not."""
    pixels = np.asarray(crop, dtype=np.float32)  # float: block means are not rounded
    small = cv2.resize(pixels, (SIGNATURE_SIDE, SIGNATURE_SIDE), interpolation=cv2.INTER_AREA)
    return np.asarray(small, dtype=np.float32)


@dataclass(slots=True)
class _Kept:
    signature: npt.NDArray[np.float32]
    result: Any
    reuses: int
    reusable: bool


class ZoneCache:
    """The last assessment of each zone of a fixed camera, reused while the zone looks the same.

    A zone is assessed again when any block of its signature moved by more than
    ``max_diff`` grey levels from the pixels it was last assessed on (compared with those,
    not with the previous capture, so a slow change adds up until it counts), after
    ``max_reuses`` reuses in a row, and whenever the model, the grid or the image size
    changes. An assessment ``update()`` is told not to reuse (a zone flagged with a
    problem) is made again every capture, so the N captures an alert needs are N real
    assessments, not one fluke repeated. ``max_diff`` 0 turns reuse off.
    """

    def __init__(self, max_diff: float, max_reuses: int) -> None:
        if max_diff < 0 or max_reuses < 0:
            raise ValueError("max_diff and max_reuses must be 0 or more")
        self.max_diff = float(max_diff)
        self.max_reuses = int(max_reuses)
        self._key: Hashable = None
        self._kept: dict[tuple[int, int], _Kept] = {}
        self.last_assessed = 0  # zones stale() sent back to the model on the last capture

    def clear(self) -> None:
        """Forget every zone (a new grow, a moved camera)."""
        self._key, self._kept = None, {}

    def __len__(self) -> int:
        return len(self._kept)

    def stale(
        self, key: Hashable, grid: Grid, crops: Sequence[npt.NDArray[np.uint8]]
    ) -> tuple[list[int], list[npt.NDArray[np.float32]]]:
        """Indices of the zones to assess again, and every zone's signature (for update())."""
        if key != self._key:
            self.clear()
            self._key = key
        signatures = [tile_signature(c) for c in crops]
        if self.max_diff == 0:
            self.last_assessed = len(crops)
            return list(range(len(crops))), signatures
        stale = []
        for i, (tile, sig) in enumerate(zip(grid.tiles, signatures, strict=True)):
            kept = self._kept.get((tile.row, tile.col))
            if (
                kept is None
                or not kept.reusable
                or kept.reuses >= self.max_reuses
                or float(np.abs(sig - kept.signature).max()) > self.max_diff
            ):
                stale.append(i)
        self.last_assessed = len(stale)
        return stale, signatures

    def update(
        self,
        grid: Grid,
        signatures: Sequence[npt.NDArray[np.float32]],
        fresh: Mapping[int, Any],
        reusable: Callable[[Any], bool] = lambda result: True,
    ) -> list[Any]:
        """Every zone's assessment in grid order: ``fresh`` ones (by index) and kept ones."""
        kept: dict[tuple[int, int], _Kept] = {}
        results = []
        for i, (tile, sig) in enumerate(zip(grid.tiles, signatures, strict=True)):
            cell = (tile.row, tile.col)
            if i in fresh:
                kept[cell] = _Kept(sig, fresh[i], 0, bool(reusable(fresh[i])))
            else:
                old = self._kept.get(cell)
                if old is None:
                    raise ValueError(f"zone {tile.name} was neither assessed nor kept")
                kept[cell] = _Kept(old.signature, old.result, old.reuses + 1, old.reusable)
            results.append(kept[cell].result)
        self._kept = kept  # zones that left the grid are forgotten
        return results

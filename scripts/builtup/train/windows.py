"""Training from scene windows: random windows of any size drawn from whole scenes.

Instead of the fold's pre-cut tiles, each training sample is a window of the
experiment's size at a random position of a training scene (the 2nd-place
solution's sampling). Positions lie on a grid of :data:`CELL` px; a window
that holds no pixel with data is never drawn. Whether a window holds built-up
pixels (for the target-weighted sampler) and data at all is counted exactly,
per cell, from the scene's mask. Pixels are read from the scene's tile stack
(:class:`~builtup.prepare.tiles.TileMosaic`), so windows cost a memory copy.
"""

from __future__ import annotations

import math

import numpy as np

from builtup.core.classes import BUILTUP, IGNORE
from builtup.core.errors import InputError
from builtup.prepare.tiles import TileMosaic, TileSet
from builtup.train.data import SampleDataset, series_length

CELL = 32  # the grid of window positions, and the output stride windows must be a multiple of


def cell_counts(mosaic: TileMosaic) -> tuple[np.ndarray, np.ndarray]:
    """(built-up pixels, pixels with data) per CELL x CELL cell of the scene."""
    rows, cols = math.ceil(mosaic.height / CELL), math.ceil(mosaic.width / CELL)
    built, valid = np.zeros((rows, cols), np.int64), np.zeros((rows, cols), np.int64)
    band = mosaic.size // CELL * CELL
    for top in range(0, mosaic.height, band):
        height = min(band, mosaic.height - top)
        _, mask = mosaic.read(top, 0, height, mosaic.width, images=False)
        padded = np.full((math.ceil(height / CELL) * CELL, cols * CELL), IGNORE, np.uint8)
        padded[:height, : mosaic.width] = mask
        cells = padded.reshape(-1, CELL, cols, CELL)
        first = top // CELL
        built[first : first + cells.shape[0]] = (cells == BUILTUP).sum(axis=(1, 3))
        valid[first : first + cells.shape[0]] = (cells != IGNORE).sum(axis=(1, 3))
    return built, valid


def window_sums(counts: np.ndarray, cells: int) -> np.ndarray:
    """Sums over every cells x cells block of ``counts`` (one per block position)."""
    integral = np.pad(counts.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    return (
        integral[cells:, cells:]
        - integral[:-cells, cells:]
        - integral[cells:, :-cells]
        + integral[:-cells, :-cells]
    )


def window_positions(mosaic: TileMosaic, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(positions (N, 2) of (row, col), has built-up (N,)) of every window of ``size`` px on
    the CELL grid that lies inside the scene and holds data."""
    built, valid = cell_counts(mosaic)
    cells = size // CELL
    rows = (mosaic.height - size) // CELL + 1
    cols = (mosaic.width - size) // CELL + 1
    built_sums = window_sums(built, cells)[:rows, :cols]
    valid_sums = window_sums(valid, cells)[:rows, :cols]
    r, c = np.nonzero(valid_sums > 0)
    return np.stack([r, c], axis=1) * CELL, built_sums[r, c] > 0


class SceneWindowDataset(SampleDataset):
    """Windows of ``size`` px of the given scenes, one index per :func:`window_positions` entry.

    ``epoch_length`` is the number of windows that would tile the scenes side by side: the
    draws per epoch when the experiment does not set them.
    """

    def __init__(
        self,
        stacks: dict[tuple[str, str], TileSet],
        size: int,
        recipe: str,
        mean: list[float],
        std: list[float],
        augmentation=None,
        min_acquisitions: int | None = None,
    ):
        length = series_length(recipe, stacks.values())
        super().__init__(recipe, mean, std, augmentation, min_acquisitions, length)
        if size % CELL:
            raise ValueError(f"window size {size} is not a multiple of {CELL}")
        self.size = size
        self.mosaics, positions, targets = [], [], []
        for _, tiles in sorted(stacks.items()):
            mosaic = TileMosaic(tiles)
            if size > min(mosaic.height, mosaic.width):
                raise InputError(
                    tiles.index.parent,
                    f"scene ({mosaic.width} x {mosaic.height} px) is smaller than a training "
                    f"window ({size} px): lower sampler.window",
                )
            at, has_target = window_positions(mosaic, size)
            index = np.full((len(at), 1), len(self.mosaics))
            self.mosaics.append(mosaic)
            positions.append(np.hstack([index, at]))
            targets.append(has_target)
        self.positions = np.concatenate(positions) if positions else np.zeros((0, 3), int)
        self.has_target = np.concatenate(targets) if targets else np.zeros(0, bool)
        if len(self.positions) == 0:
            raise InputError("sampler", "no training window holds data (all nodata)")
        self.epoch_length = sum(
            math.ceil(m.height / size) * math.ceil(m.width / size) for m in self.mosaics
        )

    def __len__(self) -> int:
        return len(self.positions)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        scene, row, col = self.positions[index]
        return self.mosaics[scene].read(int(row), int(col), self.size, self.size)

"""Training tiles: evenly spread, overlapping, flush with the border, stored for fast reading.

Storage (measured by benchmarks/bench_formats.py): per scene one
uncompressed ``images.npy`` (N, C, S, S) float32 and one ``masks.npy``
(N, S, S) uint8, read with memory mapping, plus ``tiles.json`` holding the
scene's CRS and transform and every tile's window, so each tile keeps its
georeference and can be exported as a GeoTIFF (:func:`export_tile`).
"""

from __future__ import annotations

import bisect
import contextlib
import json
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

from builtup.core.errors import InputError
from builtup.core.parallel import in_order
from builtup.core.rasters import atomic_path, open_raster, read_window, same_grid

BLOCK_WIDTH = 2048  # px of the scene decoded at once for cutting tiles


def tile_offsets(length: int, size: int, min_overlap: int) -> list[int]:
    """Offsets of tiles of ``size`` covering ``length`` with at least ``min_overlap`` overlap.

    The tiles are spread evenly, the first at 0 and the last flush with the end.
    """
    if size > length:
        raise ValueError(f"tile size {size} exceeds the raster side {length}")
    if not 0 <= min_overlap < size:
        raise ValueError(f"overlap {min_overlap} must be in [0, {size})")
    count = 1 if length == size else math.ceil((length - min_overlap) / (size - min_overlap))
    if count == 1:
        return [0]
    return [round(i * (length - size) / (count - 1)) for i in range(count)]


def tile_windows(height: int, width: int, size: int, min_overlap: int) -> list[Window]:
    rows = tile_offsets(height, size, min_overlap)
    cols = tile_offsets(width, size, min_overlap)
    return [Window(c, r, size, size) for r in rows for c in cols]


@dataclass(frozen=True)
class TileSet:
    """The tiles of one scene on disk."""

    images: Path
    masks: Path
    index: Path

    @classmethod
    def in_folder(cls, folder: str | Path) -> TileSet:
        folder = Path(folder)
        return cls(folder / "images.npy", folder / "masks.npy", folder / "tiles.json")

    def meta(self) -> dict:
        return json.loads(self.index.read_text())

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """Memory-mapped (images, masks): reading one tile touches only its bytes."""
        return np.load(self.images, mmap_mode="r"), np.load(self.masks, mmap_mode="r")

    def checked(self) -> tuple[dict, np.ndarray, np.ndarray]:
        """(meta, images, masks) of a folder made by ``cut_tiles``; InputError naming the
        file at fault when one is missing, unreadable or of shapes the others contradict."""
        try:
            meta = self.meta()
            windows, size = len(meta["windows"]), meta["tile_size"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise InputError(self.index, f"not a tile index written by cut_tiles: {err}") from None
        arrays = []
        for path, rest in ((self.images, None), (self.masks, ())):
            try:
                array = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as err:
                raise InputError(path, f"not a tile array written by cut_tiles: {err}") from None
            wanted = (windows, *(rest if rest is not None else array.shape[1:2]), size, size)
            if array.shape != wanted:
                raise InputError(
                    path, f"holds shape {array.shape}, where {self.index.name} implies {wanted}"
                )
            arrays.append(array)
        return meta, *arrays

    def iter_tiles(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(image, mask) of every tile in order, read sequentially with bounded memory."""
        images, masks = self.load()  # only for shapes, dtypes and data offsets
        with open(self.images, "rb") as img_in, open(self.masks, "rb") as msk_in:
            img_in.seek(images.offset)
            msk_in.seek(masks.offset)
            for _ in range(images.shape[0]):
                image = np.fromfile(img_in, images.dtype, int(np.prod(images.shape[1:])))
                mask = np.fromfile(msk_in, masks.dtype, int(np.prod(masks.shape[1:])))
                yield image.reshape(images.shape[1:]), mask.reshape(masks.shape[1:])


def tile_pieces(offsets: list[int], start: int, length: int) -> list[tuple[int, int, int]]:
    """(tile index, first, end) pieces covering [start, start + length) along one axis: each
    pixel is taken from the last tile that starts at or before it."""
    pieces, position, end = [], start, start + length
    while position < end:
        index = bisect.bisect_right(offsets, position) - 1
        stop = offsets[index + 1] if index + 1 < len(offsets) else end
        pieces.append((index, position, min(stop, end)))
        position = min(stop, end)
    return pieces


class TileMosaic:
    """Any window of a scene, read back pixel-exact from its memory-mapped tile stack.

    The tiles cover the scene without gaps, so a window is a few slices of neighbouring
    tiles: a memory copy, 42x faster than decoding the compressed GeoTIFF once the scene
    outgrows GDAL's block cache (benchmarks/bench_loader.py), and no second copy of the
    scene on disk.
    """

    def __init__(self, tiles: TileSet):
        self.tiles, self.meta = tiles, tiles.meta()
        windows = self.meta["windows"]
        self.size = self.meta["tile_size"]
        self.rows = sorted({w[1] for w in windows})
        self.cols = sorted({w[0] for w in windows})
        self.height, self.width = self.rows[-1] + self.size, self.cols[-1] + self.size
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    def _tile(self, row_index: int, col_index: int) -> int:
        return row_index * len(self.cols) + col_index

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """The memory-mapped (images, masks), opened on first use (in each loader worker)."""
        if self._arrays is None:
            self._arrays = self.tiles.load()
        return self._arrays

    def __getstate__(self):  # a memory map is not sent to loader workers; each opens its own
        return {**self.__dict__, "_arrays": None}

    def read(self, row: int, col: int, height: int, width: int, images: bool = True):
        """(image (C, h, w) float32 or None, mask (h, w) uint8) of the window at (row, col)."""
        if not (0 <= row <= self.height - height and 0 <= col <= self.width - width):
            raise ValueError(
                f"window ({row}, {col}, {height}, {width}) "
                f"outside the {self.width} x {self.height} scene"
            )
        stack, masks = self.arrays()
        image = np.empty((stack.shape[1], height, width), np.float32) if images else None
        mask = np.empty((height, width), np.uint8)
        for r, y0, y1 in tile_pieces(self.rows, row, height):
            for c, x0, x1 in tile_pieces(self.cols, col, width):
                tile = self._tile(r, c)
                source = np.s_[
                    y0 - self.rows[r] : y1 - self.rows[r], x0 - self.cols[c] : x1 - self.cols[c]
                ]
                target = np.s_[y0 - row : y1 - row, x0 - col : x1 - col]
                mask[target] = masks[tile][source]
                if images:
                    image[(slice(None), *target)] = stack[tile][(slice(None), *source)]
        return image, mask


def cut_tiles(
    scene_path: str | Path, mask_path: str | Path, tiles: TileSet, size: int, min_overlap: int
) -> int:
    """Cut a scene (or a city's stack) and its mask into tiles, one strip of tile rows at a
    time; return the count."""
    with open_raster(scene_path) as scene, open_raster(mask_path) as mask:
        if not same_grid(scene, mask):
            raise InputError(mask_path, "mask is not on the grid of its scene")
        if scene.height < size or scene.width < size:
            raise InputError(
                scene_path,
                f"scene ({scene.width}x{scene.height} px) is smaller than a tile ({size} px)",
            )
        rows = tile_offsets(scene.height, size, min_overlap)
        cols = tile_offsets(scene.width, size, min_overlap)
        count = len(rows) * len(cols)
        meta = {
            "crs": scene.crs.to_wkt(),
            "transform": list(scene.transform)[:6],
            "tile_size": size,
            "bands": list(scene.descriptions),
            "nodata": scene.nodata,
            "windows": [[c, r, size, size] for r in rows for c in cols],
        }
        with (
            atomic_path(tiles.images) as img_tmp,
            atomic_path(tiles.masks) as msk_tmp,
            open(img_tmp, "wb") as img_out,
            open(msk_tmp, "wb") as msk_out,
        ):
            _write_npy_header(img_out, (count, scene.count, size, size), np.float32)
            _write_npy_header(msk_out, (count, size, size), np.uint8)
            blocks = _blocks(scene, mask, scene_path, mask_path, rows, cols, size)
            for group, image, labels in blocks:
                for col in group:
                    x = col - group[0]
                    img_out.write(np.ascontiguousarray(image[:, :, x : x + size]))
                    msk_out.write(np.ascontiguousarray(labels[:, x : x + size]))
        with atomic_path(tiles.index) as tmp:
            tmp.write_text(json.dumps(meta))
    return count


def column_groups(cols: list[int], size: int, width: int = BLOCK_WIDTH) -> list[list[int]]:
    """Consecutive tile columns in groups whose tiles span at most ``width`` px (at least
    one tile each)."""
    groups: list[list[int]] = []
    for col in cols:
        if groups and col + size - groups[-1][0] <= width:
            groups[-1].append(col)
        else:
            groups.append([col])
    return groups


def _blocks(scene, mask, scene_path, mask_path, rows, cols, size) -> Iterator:
    """(tile columns, image, labels) blocks of one row of tiles and a group of its columns,
    in the order the tiles are stored. Blocks, not full-width strips: memory stays bounded
    whatever the scene's width and band count (a 13-band stack strip of a full-size scene
    is 290 MB). The next blocks are decoded on a reader thread while the caller writes the
    current one (GDAL releases the GIL)."""
    pieces = [(row, group) for row in rows for group in column_groups(cols, size)]

    def read(piece) -> tuple[list[int], np.ndarray, np.ndarray]:
        row, group = piece
        block = Window(group[0], row, group[-1] + size - group[0], size)
        return group, read_window(scene, scene_path, block), read_window(mask, mask_path, block, 1)

    with ThreadPoolExecutor(1) as reader:
        yield from in_order(reader, read, pieces, 1)


def _write_npy_header(fh, shape: tuple[int, ...], dtype) -> None:
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
        "fortran_order": False,
        "shape": shape,
    }
    np.lib.format.write_array_header_2_0(fh, header)


def tile_transform(meta: dict, index: int) -> Affine:
    col, row, _, _ = meta["windows"][index]
    return Affine(*meta["transform"]) @ Affine.translation(col, row)


def export_tile(
    tiles: TileSet, index: int, out_path: str | Path, mask_path: str | Path | None = None
):
    """Write tile ``index`` as a georeferenced GeoTIFF (and its mask, if asked) to inspect it;
    both files appear together, or neither."""
    meta, images, masks = tiles.checked()
    if not 0 <= index < len(meta["windows"]):
        raise InputError(tiles.index, f"tile {index} out of range (0..{len(meta['windows']) - 1})")
    size = meta["tile_size"]
    common = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "crs": meta["crs"],
        "transform": tile_transform(meta, index),
    }
    image = {"count": images.shape[1], "dtype": "float32", "nodata": meta.get("nodata", 0)}
    with contextlib.ExitStack() as outputs:
        image_tmp = outputs.enter_context(atomic_path(out_path))
        mask_tmp = outputs.enter_context(atomic_path(mask_path)) if mask_path else None
        with rasterio.open(image_tmp, "w", **image, **common) as dst:
            dst.write(np.asarray(images[index]))
            dst.descriptions = tuple(meta["bands"])
        if mask_tmp is not None:
            with rasterio.open(mask_tmp, "w", count=1, dtype="uint8", nodata=255, **common) as dst:
                dst.write(np.asarray(masks[index]), 1)

"""Measure what the workflow's storage choices rest on.

1. GeoTIFF codec for the 3-band float32 raster: write and read time, size.
2. Training-tile storage: random reads of 512 x 512 x 3 tiles (image + mask)
   from memory-mapped .npy stacks, one GeoTIFF per tile, and windows of the
   tiled scene GeoTIFF.

Usage: ``python benchmarks/bench_formats.py [--size 2048] [--reads 200]``
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from builtup.demo import generator as demo
from builtup.prepare.compose import compose_three_band
from builtup.prepare.masks import rasterize_mask
from builtup.prepare.tiles import TileSet, cut_tiles, tile_windows

CODECS = {
    "none": {},
    "lzw+pred3": {"compress": "lzw", "predictor": 3},
    "deflate+pred3": {"compress": "deflate", "predictor": 3, "zlevel": 6},
    "zstd1+pred3": {"compress": "zstd", "zstd_level": 1, "predictor": 3},
    "zstd1": {"compress": "zstd", "zstd_level": 1},
    "zstd9+pred3": {"compress": "zstd", "zstd_level": 9, "predictor": 3},
    "lerc_zstd(lossless)": {"compress": "lerc_zstd", "max_z_error": 0},
}


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench_codecs(scene: Path, work: Path) -> None:
    with rasterio.open(scene) as src:
        data, profile = src.read(), src.profile
    print(
        f"\n3-band float32 raster {data.shape[2]} x {data.shape[1]} px, "
        f"{data.nbytes / 1e6:.0f} MB raw"
    )
    print(f"{'codec':<22}{'write s':>9}{'read s':>8}{'MB':>8}{'ratio':>7}")
    for name, options in CODECS.items():
        path = work / f"codec_{name}.tif"
        base = {
            k: v for k, v in profile.items() if k not in ("compress", "predictor", "zstd_level")
        }

        def write(path=path, options=options, base=base):
            with rasterio.open(path, "w", **{**base, **options}) as dst:
                dst.write(data)

        write_s, _ = timed(write)

        def read(path=path):
            with rasterio.open(path) as src:
                return src.read()

        read_s, _ = timed(read)
        size = path.stat().st_size / 1e6
        print(
            f"{name:<22}{write_s:>9.2f}{read_s:>8.2f}{size:>8.0f}{data.nbytes / 1e6 / size:>7.2f}"
        )


def bench_tiles(scene: Path, mask: Path, work: Path, reads: int) -> None:
    tiles = TileSet.in_folder(work / "tiles")
    count = cut_tiles(scene, mask, tiles, 512, 32)
    with rasterio.open(scene) as src:
        windows = tile_windows(src.height, src.width, 512, 32)
        profile = src.profile
    per_tile = work / "tile_files"
    per_tile.mkdir()
    for i, w in enumerate(windows):
        with (
            rasterio.open(scene) as src,
            rasterio.open(
                per_tile / f"{i}.tif",
                "w",
                **{**profile, "width": 512, "height": 512, "transform": src.window_transform(w)},
            ) as dst,
        ):
            dst.write(src.read(window=w))
    order = np.random.default_rng(0).integers(0, count, reads)

    def npy():
        images, masks = tiles.load()
        for i in order:
            np.array(images[i]), np.array(masks[i])

    def tile_files():
        for i in order:
            with rasterio.open(per_tile / f"{i}.tif") as src:
                src.read()

    def scene_windows():
        with rasterio.open(scene) as src, rasterio.open(mask) as msk:
            for i in order:
                w = Window(*windows[i].flatten())
                src.read(window=w), msk.read(1, window=w)

    print(f"\nrandom reads of {reads} of {count} tiles (512 x 512 x 3 float32 + mask), warm cache")
    print(f"{'storage':<36}{'tiles/s':>9}")
    for name, fn in (
        ("npy stack, memory-mapped (chosen)", npy),
        ("one GeoTIFF per tile (ZSTD)", tile_files),
        ("windows of the scene GeoTIFF (ZSTD)", scene_windows),
    ):
        fn()  # warm the page cache
        seconds, _ = timed(fn)
        print(f"{name:<36}{reads / seconds:>9.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--reads", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_formats_"))
    try:
        records = demo.generate(
            work / "raw", size=args.size, train=1, test=0, acquisitions_per_city=1
        )
        compose_three_band(records[0]["vv"], records[0]["vh"], work / "scene.tif")
        labels = demo.label_path(work / "raw", demo.TRAIN_CITIES[0])
        rasterize_mask(work / "scene.tif", labels, work / "mask.tif")
        bench_codecs(work / "scene.tif", work)
        bench_tiles(work / "scene.tif", work / "mask.tif", work, args.reads)
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()

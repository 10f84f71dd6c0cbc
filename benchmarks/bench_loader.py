"""Training loader throughput: samples/s per worker, 512 px tiles or scene windows.

Cuts a demo scene into tiles, then reads random tiles through TileDataset
(recipe, normalisation, augmentation: the 3rd place's) and random scene windows
through SceneWindowDataset (the 2nd place's recipe and augmentation), in one
process (the per-worker rate) and through a DataLoader with several workers.
Usage::

    python benchmarks/bench_loader.py [--size 2048] [--samples 400] [--workers 2]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import torch
import yaml
from rasterio.windows import Window
from torch.utils.data import DataLoader, RandomSampler

from builtup.demo import generator as demo
from builtup.prepare.compose import compose_three_band
from builtup.prepare.masks import rasterize_mask
from builtup.prepare.tiles import TileMosaic, TileSet, cut_tiles
from builtup.train.augment import build_augmentation
from builtup.train.data import TileDataset, stacks_under
from builtup.train.windows import SceneWindowDataset

REPO = Path(__file__).resolve().parents[1]


def prepare(work: Path, size: int) -> pd.DataFrame:
    records = demo.generate(work / "raw", size=size, train=1, test=0, acquisitions_per_city=1)
    compose_three_band(records[0]["vv"], records[0]["vh"], work / "scene.tif")
    rasterize_mask(
        work / "scene.tif", demo.label_path(work / "raw", demo.TRAIN_CITIES[0]), work / "mask.tif"
    )
    count = cut_tiles(
        work / "scene.tif",
        work / "mask.tif",
        TileSet.in_folder(work / "tiles" / "c" / "s"),
        512,
        32,
    )
    return pd.DataFrame({"city": "c", "scene": "s", "tile": range(count), "target_ratio": 0.1})


def rate(dataset, samples: int, workers: int) -> float:
    loader = DataLoader(
        dataset,
        batch_size=8,
        num_workers=workers,
        sampler=RandomSampler(dataset, replacement=True, num_samples=samples),
    )
    next(iter(loader))  # start the workers, warm the page cache
    start = time.perf_counter()
    seen = sum(len(x) for x, _ in loader)
    return seen / (time.perf_counter() - start)


def second_place_augmentation(window: int) -> list[dict]:
    """The 2nd place's augmentation, its random sized crop scaled to ``window``."""
    entries = yaml.safe_load((REPO / "config/experiments/unet_vgg11_2nd_place.yaml").read_text())
    entries = entries["augmentation"]["train"]
    crop = entries[-1]
    crop.update(min_max_height=[int(0.65 * window), int(0.9 * window)], size=[window, window])
    return entries


def read_costs(work: Path, samples: int) -> None:
    """ms per random 512 px window: decoded from the scene's GeoTIFF, or copied out of its
    memory-mapped tile stack (how scene windows are read). GDAL's block cache is cut to
    16 MB, below this scene's size, as the workflow's 128 MB is below a full-size scene's
    1.4 GB: otherwise the small scene would be read from the cache."""
    mosaic = TileMosaic(TileSet.in_folder(work / "tiles" / "c" / "s"))
    rng = np.random.default_rng(0)
    corners = rng.integers(0, [mosaic.height - 511, mosaic.width - 511], (samples, 2))
    with rasterio.Env(GDAL_CACHEMAX=16), rasterio.open(work / "scene.tif") as src:
        start = time.perf_counter()
        for row, col in corners:
            src.read(window=Window(int(col), int(row), 512, 512))
        geotiff = (time.perf_counter() - start) / samples
    start = time.perf_counter()
    for row, col in corners:
        mosaic.read(int(row), int(col), 512, 512)
    stack = (time.perf_counter() - start) / samples
    print(
        f"read one random 512 px window (GDAL cache 16 MB): GeoTIFF {1000 * geotiff:.2f} ms, "
        f"tile stack {1000 * stack:.2f} ms ({geotiff / stack:.0f}x)"
    )


def window_rows(work: Path, samples: int, workers: int) -> None:
    for window in (512, 896):
        for label, entries in (("none", []), ("2nd place", second_place_augmentation(window))):
            dataset = SceneWindowDataset(
                stacks_under(work / "tiles"),
                window,
                "vvvh_clip2",
                [0.0] * 2,
                [1.0] * 2,
                build_augmentation(entries),
            )
            for count in (0, workers):
                per_second = rate(dataset, samples, count)
                print(
                    f"{f'windows {window}':<14}{label:<24}{count:>8}{per_second:>10.0f}"
                    f"{per_second / max(count, 1):>11.0f}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    experiment = yaml.safe_load((REPO / "config/experiments/lwrefinenet.yaml").read_text())
    work = Path(tempfile.mkdtemp(prefix="bench_loader_"))
    try:
        rows = prepare(work, args.size)
        print(f"{len(rows)} tiles of 512 x 512 x 3 float32, random draws, batch 8")
        print(f"{'recipe':<10}{'augmentation':<28}{'workers':>8}{'tiles/s':>9}{'per worker':>11}")
        for recipe in ("linear3", "db3"):
            for label, entries in (
                ("none", []),
                ("seed (crop 480, rot/flip, dropout)", experiment["augmentation"]["train"]),
            ):
                stacks = stacks_under(work / "tiles")
                dataset = TileDataset(
                    rows, stacks, recipe, [0.0] * 3, [1.0] * 3, build_augmentation(entries)
                )
                for workers in (0, args.workers):
                    per_second = rate(dataset, args.samples, workers)
                    per_worker = per_second / max(workers, 1)
                    print(
                        f"{recipe:<10}{label[:27]:<28}{workers:>8}{per_second:>9.0f}"
                        f"{per_worker:>11.0f}"
                    )
        print("\nrandom windows of the same scene (recipe vvvh_clip2), batch 8")
        print(
            f"{'sampling':<14}{'augmentation':<24}{'workers':>8}{'samples/s':>10}{'per worker':>11}"
        )
        window_rows(work, args.samples, args.workers)
        read_costs(work, args.samples)
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()

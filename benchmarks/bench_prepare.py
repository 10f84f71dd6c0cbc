"""Data preparation on one full-size scene: time, peak RSS and throughput per step.

Generates one 10980 x 10980 acquisition with its label (in windows), then runs
each step of the stage in its own process with ``--threads`` threads (what
``preparation.threads`` gives each rule), next to a raw ``cp`` of the same
input bytes measured in the same run. Both are measured twice: with the raw
scene in the page cache, and with it evicted first
(``posix_fadvise(DONTNEED)``), as when a run starts from scenes on disk, and
``--repeat`` times (default 3): the figures are medians, as timings on a
shared machine vary by up to 2x from run to run. Usage::

    python benchmarks/bench_prepare.py [--size 10980] [--threads 2] [--repeat 3] [--out DIR]
        [--codec '{"compress": "zstd", "zstd_level": 1, "predictor": 3}']

``--codec`` (GeoTIFF creation options as JSON) compares another compression
of the 3-band raster with the workflow's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from builtup.core.rasters import FLOAT_CODEC

REPO = Path(__file__).resolve().parents[1]

STEPS = {
    "generate (demo scene)": "from builtup.demo import generator as demo\n"
    "city = demo.TRAIN_CITIES[0]\n"
    "layout = demo.build_layout(0, 0, {size})\n"
    "demo.write_labels(layout, city, demo.label_path('{raw}', city))\n"
    "demo.write_acquisition(demo.acquisitions(city, 0, 1, {size})[0], layout, "
    "__import__('pathlib').Path('{raw}'), 0, 0)",
    "compose 3-band": "from builtup.prepare.compose import compose_three_band\n"
    "compose_three_band('{vv}', '{vh}', '{out}/scene.tif', codec={codec!r})",
    "rasterize mask": "from builtup.prepare.masks import rasterize_mask\n"
    "rasterize_mask('{out}/scene.tif', '{labels}', '{out}/mask.tif')",
    "cut tiles": "from builtup.prepare.tiles import TileSet, cut_tiles\n"
    "cut_tiles('{out}/scene.tif', '{out}/mask.tif', TileSet.in_folder('{out}/tiles'), 512, 32)",
    "tile stats (7 recipes)": "from builtup.prepare.tile_stats import tile_statistics,"
    " write_statistics\n"
    "from builtup.prepare.tiles import TileSet\n"
    "from builtup.core.recipes import RECIPES\n"
    "t, m = tile_statistics(TileSet.in_folder('{out}/tiles'), 'c', 's', recipes=tuple(RECIPES), "
    "threads={threads})\n"
    "write_statistics(t, m, '{out}/stats.tsv', '{out}/moments.json')",
}


def run_measured(argv: list[str], threads: int = 1) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process (GDAL threads as rule.run sets them)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "scripts"), "GDAL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"step failed: {argv}")
    return elapsed, usage.ru_maxrss / 1024


def evict(*paths: Path) -> None:
    """Drop the files' pages from the page cache, so the next read comes from disk."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def run_stage(names: dict, threads: int) -> list[tuple[str, float, float]]:
    """Every step after generation, in order, each in its own process."""
    out = names["out"]
    shutil.rmtree(out / "tiles", ignore_errors=True)
    for name in ("scene.tif", "mask.tif", "stats.tsv", "moments.json"):
        (out / name).unlink(missing_ok=True)
    rows = []
    for name, code in list(STEPS.items())[1:]:
        seconds, rss = run_measured([sys.executable, "-c", code.format(**names)], threads)
        rows.append((name, seconds, rss))
    return rows


def median_rows(runs: list[list[tuple[str, float, float]]]) -> list[tuple[str, float, float]]:
    """Per step: the median wall time and the largest peak RSS over repeated stage runs."""
    return [
        (steps[0][0], statistics.median(s[1] for s in steps), max(s[2] for s in steps))
        for steps in zip(*runs, strict=True)
    ]


def raw_copy(vv: Path, vh: Path, out: Path) -> float:
    seconds, _ = run_measured(["cp", str(vv), str(vh), str(out)])
    (out / vv.name).unlink()
    (out / vh.name).unlink()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument(
        "--threads", type=int, default=2, help="threads per step, as preparation.threads"
    )
    parser.add_argument(
        "--codec",
        type=json.loads,
        default=FLOAT_CODEC,
        help="compression of the 3-band raster, GeoTIFF creation options as JSON",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="stage runs; the figures are their medians"
    )
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "out"))
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    parser.add_argument("--reuse", action="store_true", help="reuse a kept generated scene")
    args = parser.parse_args()

    out = Path(args.out) / f"prepare_{args.size}"
    raw = out / "raw"
    names = {
        "raw": raw,
        "out": out,
        "size": args.size,
        "threads": args.threads,
        "codec": args.codec,
    }
    generated = None
    if not (args.reuse and any(raw.rglob("*.shp"))):
        shutil.rmtree(out, ignore_errors=True)
        raw.mkdir(parents=True)
        generated = run_measured(
            [sys.executable, "-c", STEPS["generate (demo scene)"].format(**names)]
        )
    vv = next(p for p in raw.rglob("*_vv_*.tif"))
    vh = next(p for p in raw.rglob("*_vh_*.tif"))
    names.update(vv=vv, vh=vh, labels=next(raw.rglob("*.shp")))
    input_bytes = vv.stat().st_size + vh.stat().st_size

    raw_copy(vv, vh, out)  # brings the scene into the page cache
    copies_warm, copies_cold, warm_runs, cold_runs = [], [], [], []
    for _ in range(args.repeat):  # each cold run leaves the scene in the page cache again
        copies_warm.append(raw_copy(vv, vh, out))
        warm_runs.append(run_stage(names, args.threads))
        evict(vv, vh)
        copies_cold.append(raw_copy(vv, vh, out))
        evict(vv, vh)
        cold_runs.append(run_stage(names, args.threads))
    copy_warm, copy_cold = statistics.median(copies_warm), statistics.median(copies_cold)
    warm, cold = median_rows(warm_runs), median_rows(cold_runs)

    pixels = args.size * args.size
    print(
        f"scene {args.size}^2 px, VV+VH {input_bytes / 1e6:.0f} MB, {os.cpu_count()} CPUs, "
        f"{args.threads} threads per step, raster codec {json.dumps(args.codec)}, "
        f"median of {args.repeat} runs"
    )
    print(f"{'step':<24}{'wall s':>9}{'peak RSS MB':>13}{'Mpx/s':>9}{'input evicted s':>17}")
    if generated:
        print(f"{'generate (demo scene)':<24}{generated[0]:>9.2f}{generated[1]:>13.0f}")
    for (name, seconds, rss), (_, cold_seconds, _) in zip(warm, cold, strict=True):
        print(
            f"{name:<24}{seconds:>9.2f}{rss:>13.0f}{pixels / seconds / 1e6:>9.1f}"
            f"{cold_seconds:>17.2f}"
        )
    stage_warm = sum(row[1] for row in warm)
    stage_cold = sum(row[1] for row in cold)
    stage_rss = max(row[2] for row in warm + cold)
    print(
        f"{'stage (compose..stats)':<24}{stage_warm:>9.2f}{stage_rss:>13.0f}"
        f"{'':>9}{stage_cold:>17.2f}"
    )
    print(f"{'cp VV+VH (raw copy)':<24}{copy_warm:>9.2f}{'':>13}{'':>9}{copy_cold:>17.2f}")
    print(
        f"stage / raw copy: {stage_warm / copy_warm:.1f}x in cache, "
        f"{stage_cold / copy_cold:.1f}x input evicted (target <= 2x); "
        f"peak RSS {stage_rss:.0f} MB (target < 2000 MB)"
    )
    sizes = {p.name: p.stat().st_size / 1e6 for p in (out / "scene.tif", out / "mask.tif")}
    print(
        "outputs MB: "
        + ", ".join(f"{k} {v:.0f}" for k, v in sizes.items())
        + f", tiles {sum(p.stat().st_size for p in (out / 'tiles').iterdir()) / 1e6:.0f}"
    )
    if not args.keep:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()

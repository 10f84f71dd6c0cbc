"""Data preparation on one full-size scene: time, peak RSS and throughput per step.

Generates one 10980 x 10980 acquisition with its label (in windows), then runs
each step of the stage in its own process, next to a raw ``cp`` of the same
input bytes measured in the same run. Usage::

    python benchmarks/bench_prepare.py [--size 10980] [--out benchmarks/out]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

STEPS = {
    "generate (demo scene)": "from builtup import demo\n"
    "city = demo.TRAIN_CITIES[0]\n"
    "layout = demo.build_layout(0, 0, {size})\n"
    "demo.write_labels(layout, city, demo.label_path('{raw}', city))\n"
    "demo.write_acquisition(demo.acquisitions(city, 0, 1, {size})[0], layout, "
    "__import__('pathlib').Path('{raw}'), 0, 0)",
    "compose 3-band": "from builtup.ingest import compose_three_band\n"
    "compose_three_band('{vv}', '{vh}', '{out}/scene.tif')",
    "rasterize mask": "from builtup.labels import rasterize_mask\n"
    "rasterize_mask('{out}/scene.tif', '{labels}', '{out}/mask.tif')",
    "cut tiles": "from builtup.tiling import TileSet, cut_tiles\n"
    "cut_tiles('{out}/scene.tif', '{out}/mask.tif', TileSet.in_folder('{out}/tiles'), 512, 32)",
    "tile stats (7 recipes)": "from builtup.stats import tile_statistics, write_statistics\n"
    "from builtup.tiling import TileSet\n"
    "from builtup.recipes import RECIPES\n"
    "t, m = tile_statistics(TileSet.in_folder('{out}/tiles'), 'c', 's', recipes=tuple(RECIPES))\n"
    "write_statistics(t, m, '{out}/stats.tsv', '{out}/moments.json')",
}


def run_measured(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env={**os.environ, "PYTHONPATH": str(REPO / "scripts")})
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"step failed: {argv}")
    return elapsed, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "out"))
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()

    out = Path(args.out) / f"prepare_{args.size}"
    shutil.rmtree(out, ignore_errors=True)
    raw = out / "raw"
    raw.mkdir(parents=True)
    names = {"raw": raw, "out": out, "size": args.size}

    rows = []
    seconds, rss = run_measured(
        [sys.executable, "-c", STEPS["generate (demo scene)"].format(**names)]
    )
    rows.append(("generate (demo scene)", seconds, rss))
    vv = next(p for p in raw.rglob("*_vv_*.tif"))
    vh = next(p for p in raw.rglob("*_vh_*.tif"))
    names.update(vv=vv, vh=vh, labels=next(raw.rglob("*.shp")))
    input_bytes = vv.stat().st_size + vh.stat().st_size

    copy_seconds, copy_rss = run_measured(["cp", str(vv), str(vh), str(out)])
    stage_seconds, stage_rss = 0.0, 0.0
    for name, code in list(STEPS.items())[1:]:
        seconds, rss = run_measured([sys.executable, "-c", code.format(**names)])
        rows.append((name, seconds, rss))
        stage_seconds += seconds
        stage_rss = max(stage_rss, rss)

    pixels = args.size * args.size
    print(f"scene {args.size}^2 px, VV+VH {input_bytes / 1e6:.0f} MB, {os.cpu_count()} CPUs")
    print(f"{'step':<24}{'wall s':>9}{'peak RSS MB':>13}{'Mpx/s':>9}")
    for name, seconds, rss in rows:
        print(f"{name:<24}{seconds:>9.2f}{rss:>13.0f}{pixels / seconds / 1e6:>9.1f}")
    print(
        f"{'cp VV+VH (raw copy)':<24}{copy_seconds:>9.2f}{copy_rss:>13.0f}"
        f"{pixels / copy_seconds / 1e6:>9.1f}"
    )
    print(
        f"{'stage (compose..stats)':<24}{stage_seconds:>9.2f}{stage_rss:>13.0f}"
        f"{pixels / stage_seconds / 1e6:>9.1f}"
    )
    print(
        f"stage / raw copy: {stage_seconds / copy_seconds:.1f}x  (target <= 2x); "
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

"""The temporal stack of a full-size city: time, peak RSS and output size.

Generates one 10980 x 10980 acquisition of the demo and composes its 3-band raster
(as ``bench_prepare.py`` does), then stacks ``--acquisitions`` acquisitions of it
(default 16) in a child process, as the ``temporal_stack`` rule does. Every second
acquisition is a VRT of the same raster moved by ``--shift`` pixels (default 0.5),
so half of them go through the bilinear warp onto the reference grid, as
acquisitions of another orbit do. Usage::

    python benchmarks/bench_stack.py [--size 10980] [--acquisitions 16] [--shift 0.5]
        [--out DIR] [--keep]

The stack (VV and VH in dB of every acquisition: 32 float32 bands for 16, zstd) needs
several GB of disk per acquisition pair beside the 1.1 GB raster.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from xml.sax.saxutils import escape

import rasterio
from bench_prepare import REPO, STEPS, run_measured

from builtup.core.bands import stacked_scenes
from builtup.core.rasters import FLOAT_CODEC

STACK = (
    "from builtup.prepare.temporal import temporal_stack\n"
    "temporal_stack({rasters!r}, '{out}/stack.tif')"
)


def shifted_vrt(raster: Path, shift: float, out_path: Path) -> Path:
    """A VRT of ``raster`` whose grid is moved ``shift`` pixels east and south."""
    with rasterio.open(raster) as src:
        t = src.transform
        origin = (t.c + shift * t.a, t.f + shift * t.e)
        bands = "".join(
            f'<VRTRasterBand dataType="Float32" band="{b}"><NoDataValue>0</NoDataValue>'
            f"<SimpleSource><SourceFilename>{escape(str(raster))}</SourceFilename>"
            f"<SourceBand>{b}</SourceBand></SimpleSource></VRTRasterBand>"
            for b in range(1, src.count + 1)
        )
        out_path.write_text(
            f'<VRTDataset rasterXSize="{src.width}" rasterYSize="{src.height}">'
            f"<SRS>{escape(src.crs.to_wkt())}</SRS>"
            f"<GeoTransform>{origin[0]}, {t.a}, 0, {origin[1]}, 0, {t.e}</GeoTransform>"
            f"{bands}</VRTDataset>"
        )
    return out_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=10980)
    parser.add_argument("--acquisitions", type=int, default=16)
    parser.add_argument("--shift", type=float, default=0.5, help="pixels, every second one")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "out"))
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    args = parser.parse_args()

    out = Path(args.out) / f"stack_{args.size}"
    raw = out / "raw"
    shutil.rmtree(out, ignore_errors=True)
    raw.mkdir(parents=True)
    names = {"raw": raw, "out": out, "size": args.size, "codec": FLOAT_CODEC}
    python = sys.executable
    run_measured([python, "-c", STEPS["generate (demo scene)"].format(**names)])
    names.update(vv=next(raw.rglob("*_vv_*.tif")), vh=next(raw.rglob("*_vh_*.tif")))
    run_measured([python, "-c", STEPS["compose 3-band"].format(**names)], threads=2)
    scene = out / "scene.tif"
    rasters = [
        str(scene if k % 2 == 0 else shifted_vrt(scene, args.shift, out / f"shifted{k}.vrt"))
        for k in range(args.acquisitions)
    ]
    code = STACK.format(rasters=rasters, out=out)
    seconds, rss = run_measured([python, "-c", code], threads=1)

    stack = out / "stack.tif"
    with rasterio.open(stack) as src:
        assert len(stacked_scenes(src.descriptions)) == args.acquisitions
        assert src.shape == (args.size, args.size)
        bands = src.count
    pixels = args.size * args.size
    print(
        f"stack of {args.acquisitions} acquisitions of {args.size}^2 px "
        f"({args.acquisitions // 2} warped by {args.shift} px), {os.cpu_count()} CPUs, 1 job thread"
    )
    print(
        f"wall {seconds:.1f} s, {pixels * args.acquisitions / seconds / 1e6:.1f} Mpx "
        f"acquisition-pixels/s, peak RSS {rss:.0f} MB (target < 2000 MB), "
        f"stack {stack.stat().st_size / 1e9:.2f} GB ({bands} float32 bands)"
    )
    if not args.keep:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()

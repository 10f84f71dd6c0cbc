"""The DAG at the real challenge's size: how long ``snakemake -n`` takes to plan it.

Builds, in a scratch copy of the workflow, a scenes sheet of 8 cities x 4 acquisitions with
full-size UNOSAT file names (4 training cities, so 4 folds; 4 test cities), two experiments
and empty stand-ins for the raw files and labels (a dry run never reads them), then times
``snakemake -n`` from process start to exit. Usage::

    python benchmarks/bench_dag.py [--repeat 3] [--experiments lwrefinenet unet_resnet50]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
TRAIN = ["38SLF_Mosul", "38SNE_Souleimaniye", "38SMA_Najaf", "38RPV_Nasiryah"]
TEST = ["38RNV_Samawah", "38SLD_Tikrit", "38SMB_Baghdad", "38SKC_Ramadi"]
DATES = [("20150108", "DES", "025534"), ("20150120", "ASC", "150512")]
DATES += [("20150201", "DES", "025534"), ("20150213", "ASC", "150512")]


def raw_path(city: str, date: str, orbit: str, clock: str, pol: str) -> str:
    tile, name = city.split("_")
    product = f"s1tiling_S1A_IW_GRDH_1SDV_{date}T{clock}_{date}T{clock}_04000"
    return f"data/{name}_2015/{product}/{tile}/s1a_{tile}_{pol}_{orbit}_{date}t{clock}.tif"


def build(root: Path, experiments: list[str]) -> int:
    """Write the sheet, config and stand-in files; returns the number of acquisitions."""
    for name in ("workflow", "scripts", "config"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("*.egg-info"))
    rows = ["city\tscene\tvv\tvh\tsplit"]
    for city in TRAIN + TEST:
        split = "train" if city in TRAIN else "test"
        for date, orbit, clock in DATES:
            vv, vh = (raw_path(city, date, orbit, clock, pol) for pol in ("vv", "vh"))
            rows.append(f"{city}\t{date}_{orbit}\t{vv}\t{vh}\t{split}")
            for path in (vv, vh):
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                (root / path).touch()
    (root / "config/scenes.tsv").write_text("\n".join(rows) + "\n")
    labels = {}
    for city in TRAIN:
        shp = root / f"data/{city.split('_')[1]}_2015/{city}.shp"
        for ext in (".shp", ".shx", ".dbf", ".prj"):
            shp.with_suffix(ext).touch()
        labels[city] = str(shp.relative_to(root))
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config.update(cities=TRAIN + TEST, labels=labels, experiments=experiments)
    config["demo"]["enabled"] = False
    (root / "config/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return len(rows) - 1


def dry_run(root: Path) -> tuple[float, str]:
    exe = Path(sys.executable).with_name("snakemake")
    start = time.perf_counter()
    result = subprocess.run(
        [str(exe), "-n", "--cores", "2"], cwd=root, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return elapsed, result.stdout + result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--experiments", nargs="+", default=["lwrefinenet", "unet_resnet50"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        scenes = build(root, args.experiments)
        times, text = zip(*(dry_run(root) for _ in range(args.repeat)), strict=True)
    jobs = re.search(r"^total\s+(\d+)$", text[-1], re.M)[1]
    print(
        f"{len(TRAIN + TEST)} cities x {len(DATES)} acquisitions ({scenes} scenes), "
        f"{len(args.experiments)} experiments x {len(TRAIN)} folds: {jobs} jobs"
    )
    print(
        f"snakemake -n: median {statistics.median(times):.2f} s, "
        f"min {min(times):.2f} s over {args.repeat} runs (target < 5 s)"
    )


if __name__ == "__main__":
    main()

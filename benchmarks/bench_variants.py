"""The shipped demo experiments on the demo's data variants, scored as a user scores them.

Each variant is a data set from ``builtup generate-demo`` with its own options (the number of
acquisitions per city, the test cities' own number, the label style); for each, in its own
folder under ``--out``, it writes the data, the sheet (``builtup make-sheet``) and a config
(the shipped one, with that sheet, those labels and the chosen experiments), runs the whole
DAG (``snakemake --cores N``; a rerun only rebuilds what is stale) and prints, from each
variant's ``results/evaluation/leaderboard.tsv`` and ``cities.tsv``, the out-of-fold / test
F1 of every experiment and baseline and the F1 per city beside its number of acquisitions.
Usage::

    python benchmarks/bench_variants.py --out /tmp/variants [--variants mixed 2to4] \\
        [--experiments demo temporal_demo fusion_demo] [--cores 2] \\
        [--set-threads train=1 predict_scene=1]

``--set-threads`` goes to Snakemake as it is: with ``train=1 predict_scene=1`` the variants
run as ``make run`` runs the shipped demo.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "shipped": [],  # as make run: 2 acquisitions per city, district labels
    "acquisitions4": ["--acquisitions", "4"],
    "blocks": ["--labels", "blocks"],
    "mixed": ["--acquisitions", "2-6"],
    "2to4": ["--acquisitions", "2", "--test-acquisitions", "4"],
    "4to2": ["--acquisitions", "4", "--test-acquisitions", "2"],
}
BIN = Path(sys.executable).parent


def prepare(folder: Path, options: list[str], experiments: list[str]) -> Path:
    """The variant's data, sheet and config in ``folder``; returns the config file."""
    data = folder / "data"
    if not data.exists():
        subprocess.run([BIN / "builtup", "generate-demo", data, *options], check=True)
    sheet = folder / "scenes.tsv"
    subprocess.run([BIN / "builtup", "make-sheet", data, "-o", sheet], check=True)
    (folder / "config").mkdir(exist_ok=True)
    experiment_files = folder / "config" / "experiments"
    if not experiment_files.exists():
        experiment_files.symlink_to(REPO / "config" / "experiments")
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cities = sorted(pd.read_csv(sheet, sep="\t")["city"].unique())
    labels = {city: str(next(data.glob(f"*_2015/{city}.shp"))) for city in cities}
    config.update(scenes=str(sheet), cities=cities, labels=labels, experiments=experiments)
    config["demo"]["enabled"] = False
    path = folder / "config" / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run(folder: Path, config: Path, cores: int, threads: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [BIN / "snakemake", "--snakefile", REPO / "workflow" / "Snakefile", "--cores", str(cores)]
        + (["--set-threads", *threads] if threads else [])
        + ["--directory", folder, "--configfile", config, "--quiet", "rules"],
        check=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "scripts")},
    )
    return time.perf_counter() - start


def report(name: str, folder: Path, seconds: float) -> None:
    board = pd.read_csv(folder / "results/evaluation/leaderboard.tsv", sep="\t")
    cities = pd.read_csv(folder / "results/evaluation/cities.tsv", sep="\t")
    print(f"\n## {name} ({seconds / 60:.1f} min)\n")
    print("| name | out of fold | test |\n| --- | --- | --- |")
    for row in board.itertuples():
        print(f"| {row.name} | {row.train_f1:.3f} | {row.test_f1:.3f} |")
    names = list(board["name"])
    print("\n| city | split | acquisitions | " + " | ".join(names) + " |")
    print("| --- " * (3 + len(names)) + "|")
    for row in cities.to_dict("records"):
        scores = " | ".join(f"{row[n]:.3f}" for n in names)
        print(f"| {row['city']} | {row['split']} | {row['acquisitions']} | {scores} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="folder of the variants' runs")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument(
        "--experiments", nargs="+", default=["demo", "temporal_demo", "fusion_demo"]
    )
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--set-threads", nargs="+", default=[], metavar="RULE=N")
    args = parser.parse_args()
    for name in args.variants:
        folder = (args.out / name).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        config = prepare(folder, VARIANTS[name], args.experiments)
        report(name, folder, run(folder, config, args.cores, args.set_threads))


if __name__ == "__main__":
    main()

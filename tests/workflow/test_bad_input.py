"""Every kind of malformed input, through the real workflow.

Each case starts from a finished run of the smallest DAG, spoils one input, and asks for a
target that depends on it. Snakemake must exit non-zero, print exactly one line
``ERROR: <file>: <fault>``, and leave no finished-looking output behind. The README's
troubleshooting section lists the same cases.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml
from affine import Affine

from builtup.config.sheet import read_sheet

from conftest import SMALL_DAG_CITIES, Sandbox

pytestmark = pytest.mark.slow

TRAIN_CITY, TEST_CITY = SMALL_DAG_CITIES[0], SMALL_DAG_CITIES[2]


class Case(Sandbox):
    """A copy of the finished run, with helpers to spoil its inputs."""

    def scene(self, city: str) -> str:
        return self.sheet_rows(city)[0]["scene"]

    def label(self, city: str) -> Path:
        return self.root / self.config["labels"][city]

    def experiment(self, **changes) -> Path:
        path = self.root / "config/experiments/tiny.yaml"
        spec = yaml.safe_load(path.read_text())
        path.write_text(yaml.safe_dump({**spec, **changes}))
        return path


def ensemble_of_scene_and_stack_models(case: Case) -> Path:
    spec = yaml.safe_load((case.root / "config/experiments/tiny.yaml").read_text())
    stacked = {**spec, "recipe": "stack_mean"}
    (case.root / "config/experiments/tiny_stack.yaml").write_text(yaml.safe_dump(stacked))
    case.config.update(
        experiments=["tiny", "tiny_stack"],
        recipes=["db3", "stack_mean"],
        ensembles={"mixed": ["tiny", "tiny_stack"]},
    )
    case.write_config()
    return case.root / "config/config.yaml"


def rewrite(path: Path, change_data=None, **profile_changes) -> Path:
    with rasterio.open(path) as src:
        data, profile = src.read(), src.profile
    profile.update(profile_changes)
    if profile.get("crs") is None:
        profile.pop("crs", None)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(change_data(data) if change_data else data)
    return path


def shifted(path: Path, metres: float) -> dict:
    with rasterio.open(path) as src:
        t = src.transform
    return {"transform": Affine(t.a, t.b, t.c + metres, t.d, t.e, t.f)}


def with_infinity(data):
    data[:, 10:20, 10:20] = np.inf
    return data


def foreign_checkpoint(case: Case) -> Path:
    """Mosul's model, relabelled as trained on another recipe."""
    path = case.root / f"results/models/tiny/{TRAIN_CITY}/model.ckpt"
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    checkpoint["hyper_parameters"]["experiment"]["recipe"] = "linear3"
    torch.save(checkpoint, path)
    return path


def second_acquisition_far_away(case: Case) -> Path:
    """A second acquisition of the test city, 50 km east of the first."""
    row = case.sheet_rows(TEST_CITY)[0]
    moved = {**row, "scene": "20150301_ASC"}
    for pol in ("vv", "vh"):
        source = case.root / row[pol]
        target = source.with_name(f"far_{source.name}")
        shutil.copy(source, target)
        rewrite(target, **shifted(target, 50_000))
        moved[pol] = str(target.relative_to(case.root))
    with open(case.root / "config/scenes.tsv", "a") as sheet:
        sheet.write("\t".join(moved[key] for key in row) + "\n")
    return case.root / f"results/predictions/tiny/{TEST_CITY}/{moved['scene']}.tif"


def truncated(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[:4000])
    return path


def empty_shapefile(path: Path) -> Path:
    import fiona

    with fiona.open(path) as src:
        schema, crs = src.schema, src.crs
    with fiona.open(path, "w", driver="ESRI Shapefile", schema=schema, crs=crs):
        pass
    return path


def garbage(path: Path) -> Path:
    path.write_bytes(b"not a shapefile at all" * 20)
    return path


def without_prj(path: Path) -> Path:
    path.with_suffix(".prj").unlink()
    return path


def edit_config(case: Case, change) -> Path:
    change(case.config)
    case.write_config()
    return case.root / "config/config.yaml"


def edit_sheet_cell(case: Case, column: str, value: str) -> Path:
    path = case.root / "config/scenes.tsv"
    sheet = read_sheet(path)
    sheet.loc[sheet.index[0], column] = value
    sheet.to_csv(path, sep="\t", index=False)
    return path


def moved_raw_scene(case: Case) -> Path:
    """Own data (no demo) whose sheet names a VV file that has been moved away."""
    edit_config(case, lambda config: config["demo"].update(enabled=False))
    raw(case).rename(case.root / "moved.tif")
    return case.root / "config/scenes.tsv"


def append_to(path: Path, text: str) -> Path:
    with open(path, "a") as file:
        file.write(text)
    return path


def second_row_of_a_training_city(case: Case) -> Path:
    """Mosul's first acquisition again, under another name, as a test scene."""
    row = {**case.sheet_rows(TRAIN_CITY)[0], "scene": "20990101_DES", "split": "test"}
    return append_to(case.root / "config/scenes.tsv", "\t".join(row.values()) + "\n")


@dataclass
class Bad:
    spoil: Callable[[Case], Path]  # returns the file the message must name
    fault: str
    target: Callable[[Case], str] | None = None  # None: the whole DAG, dry run

    def __str__(self):
        return self.fault


def raster(city=TRAIN_CITY):
    return lambda case: f"results/rasters/{city}/{case.scene(city)}.tif"


def mask(city=TRAIN_CITY):
    return lambda case: f"results/masks/{city}/{case.scene(city)}.tif"


def model(case):
    return f"results/models/tiny/{TRAIN_CITY}/model.ckpt"


def raw(case, pol="vv", city=TRAIN_CITY):
    return case.root / case.sheet_rows(city)[0][pol]


CASES = {
    "unknown config key": Bad(
        lambda c: edit_config(c, lambda cfg: cfg.update(colour="red")),
        "'colour' was unexpected",
    ),
    "wrong type in the config": Bad(
        lambda c: edit_config(c, lambda cfg: cfg["tiles"].update(size="big")),
        "tiles.size: 'big' is not of type 'integer'",
    ),
    "unknown city": Bad(
        lambda c: (
            edit_config(c, lambda cfg: cfg["cities"].append("38SMB_Bagdad"))
            and c.root / "config/scenes.tsv"
        ),
        "city 38SMB_Bagdad is in the config but has no scene in the sheet",
    ),
    "unknown experiment": Bad(
        lambda c: (
            edit_config(c, lambda cfg: cfg.update(experiments=["nope"]))
            and c.root / "config/experiments/nope.yaml"
        ),
        "experiment file does not exist",
    ),
    "wrong type in an experiment": Bad(
        lambda c: c.experiment(epochs="many"), "epochs: 'many' is not of type 'integer'"
    ),
    "unknown encoder in an experiment": Bad(
        lambda c: c.experiment(model={"architecture": "lwrefinenet", "encoder": "nosuchnet"}),
        "nosuchnet",  # at the dry run: the models of the last run are left as they are
    ),
    "missing polarisation in the sheet": Bad(
        lambda c: edit_sheet_cell(c, "vh", ""), "vh: '' should be non-empty"
    ),
    "corrupt TIFF": Bad(lambda c: truncated(raw(c, "vh")), "corrupt or truncated", raster()),
    "grids that differ": Bad(
        lambda c: rewrite(raw(c, "vh"), **shifted(raw(c, "vh"), 25)),
        "differs from VV grid",
        raster(),
    ),
    "no CRS": Bad(lambda c: rewrite(raw(c), crs=None), "raster has no CRS", raster()),
    "NaN/inf values": Bad(
        lambda c: rewrite(raw(c), with_infinity), "NaN/inf values where nodata", raster()
    ),
    "all-nodata scene": Bad(
        lambda c: rewrite(raw(c, "vh"), np.zeros_like) and rewrite(raw(c), np.zeros_like),
        "scene is entirely nodata",
        raster(),
    ),
    "empty shapefile": Bad(
        lambda c: empty_shapefile(c.label(TRAIN_CITY)), "holds no polygon", mask()
    ),
    "invalid shapefile": Bad(
        lambda c: garbage(c.label(TRAIN_CITY)), "cannot be read as vector data", mask()
    ),
    "unprojected shapefile": Bad(
        lambda c: without_prj(c.label(TRAIN_CITY)), "shapefile has no .prj", mask()
    ),
    "mismatched checkpoint": Bad(
        foreign_checkpoint,
        "checkpoint does not match the experiment: recipe",
        lambda c: f"results/predictions/tiny/{TRAIN_CITY}/{c.scene(TRAIN_CITY)}.tif",
    ),
    "recipe without fold statistics": Bad(
        lambda c: c.experiment(recipe="db5"), "whose statistics the folds do not compute"
    ),
    "ensemble of scene and stack experiments": Bad(
        ensemble_of_scene_and_stack_models, "mixes experiments that read scenes and temporal"
    ),
    "overlap as large as the window": Bad(
        lambda c: edit_config(c, lambda cfg: cfg["prediction"].update(window=256, overlap=256)),
        "prediction.overlap (256 px) must be less than prediction.window (256 px)",
    ),
    "misspelt model option": Bad(
        lambda c: c.experiment(
            model={
                "architecture": "lwrefinenet",
                "encoder": "mobilenetv2_050",
                "options": {"widht": 8},
            }
        ),
        "model.options: LWRefineNet has no option widht",
    ),
    "key given twice in the config": Bad(
        lambda c: append_to(c.root / "config/config.yaml", "cities: [38SLF_Mosul]\n"),
        "key 'cities' given twice",
    ),
    "city in both splits": Bad(second_row_of_a_training_city, "has both train and test rows"),
    "missing raw scene": Bad(moved_raw_scene, "does not exist"),
    "non-overlapping acquisitions": Bad(
        second_acquisition_far_away,
        "acquisition does not overlap",
        lambda c: f"results/cities/tiny/{TEST_CITY}.tif",
    ),
}


@pytest.mark.parametrize("bad", CASES.values(), ids=CASES.keys())
def test_bad_input_stops_with_one_line(small_dag_finished, tmp_path, bad):
    case = Case.copy(small_dag_finished, tmp_path)
    culprit = bad.spoil(case)
    target = bad.target(case) if bad.target else None
    result = case.snakemake(target) if target else case.snakemake("-n")

    assert result.returncode != 0
    output = result.stdout + result.stderr
    errors = [line for line in output.splitlines() if line.startswith("ERROR: ")]
    assert len(errors) == 1, output[-4000:]
    assert bad.fault in errors[0], errors[0]
    named = str(culprit.relative_to(case.root))
    assert named in errors[0] or culprit.name in errors[0], errors[0]
    if target:
        assert not (case.root / target).exists()


def test_a_dry_run_builds_only_the_experiments_it_has_not_seen_built(small_dag_finished, tmp_path):
    """The finished run recorded its experiment's names as built: a dry run imports no
    training library (a torch that cannot be imported is not touched), until the experiment
    changes and is built again."""
    box = Sandbox.copy(small_dag_finished, tmp_path / "box")
    unimportable = tmp_path / "site" / "torch"
    unimportable.mkdir(parents=True)
    (unimportable / "__init__.py").write_text("raise ImportError('torch imported')\n")
    paths = [str(unimportable.parent), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    command = [str(Path(sys.executable).with_name("snakemake")), "-n"]

    dry = subprocess.run(command, cwd=box.root, env=env, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "Nothing to be done" in dry.stdout + dry.stderr

    experiment = box.root / "config/experiments/tiny.yaml"
    experiment.write_text(yaml.safe_dump({**yaml.safe_load(experiment.read_text()), "epochs": 2}))
    dry = subprocess.run(command, cwd=box.root, env=env, capture_output=True, text=True)
    output = dry.stdout + dry.stderr
    assert dry.returncode != 0 and "torch imported" in output, output[-3000:]

"""Shared fixtures: synthetic rasters and shapefiles, a tiny demo, and a workflow sandbox."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import fiona
import numpy as np
import pytest
import rasterio
import yaml
from affine import Affine
from shapely.geometry import mapping

from builtup.config.sheet import read_sheet

# Under pytest-xdist two workers share the cores: a torch process on more threads than it
# has cores to itself waits on spinning OpenMP threads, several times slower on small
# batches. The workers' torch processes run on one thread, and so do the Sandbox's jobs.
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"
TORCH_RULES = ("train", "predict_scene")

REPO = Path(__file__).resolve().parents[1]
SHARED_SAMPLE = REPO.parent / "shared" / "data" / "sen1floods11_sample"
UTM = "EPSG:32638"
ORIGIN = Affine(10, 0, 400000, 0, -10, 3600000)

# A very small experiment that trains in seconds on the tiny demo.
TINY = {
    "description": "a very small model for tests",
    "model": {
        "architecture": "lwrefinenet",
        "encoder": "mobilenetv2_050",
        "options": {"width": 16},
    },
    "recipe": "db3",
    "loss": [{"name": "ce", "class_weights": [0.5, 1.5]}, {"name": "jaccard"}],
    "optimizer": {"name": "adamw", "lr": 0.003},
    "epochs": 2,
    "batch_size": 6,
    "sampler": {"with_target": 0.7, "without_target": 0.3},
    "augmentation": {
        "train": [
            {
                "name": "RandomResizedCrop",
                "size": [96, 96],
                "scale": [0.7, 1.0],
                "ratio": [0.9, 1.1],
            },
            {
                "name": "OneOf",
                "p": 1.0,
                "transforms": [{"name": "RandomRotate90"}, {"name": "HorizontalFlip"}],
            },
        ]
    },
    "accelerator": "cpu",
    "seed": 5,
}
SMALL_DAG_EXPERIMENT = {**TINY, "epochs": 1}

# Pixel lengths of the shipped experiments (windows, crops, context) at the tiny demo's scale
CPU_SCALE = 1 / 7  # 896 px windows become 128 px, the tiny demo's tiles


def _scaled(length: int, multiple: int = 32) -> int:
    return max(multiple, round(length * CPU_SCALE / multiple) * multiple)


def _scaled_transform(transform: dict) -> dict:
    transform = dict(transform)
    if "size" in transform:
        transform["size"] = [_scaled(n) for n in transform["size"]]
    for key in ("hole_height_range", "hole_width_range"):
        if key in transform:
            transform[key] = [max(1, round(n * CPU_SCALE)) for n in transform[key]]
    if "min_max_height" in transform:
        transform["min_max_height"] = [round(n * CPU_SCALE) for n in transform["min_max_height"]]
    if "transforms" in transform:
        transform["transforms"] = [_scaled_transform(t) for t in transform["transforms"]]
    return transform


def at_cpu_scale(spec: dict) -> dict:
    """A shipped experiment shrunk in scale only, for the tiny demo on two CPU cores: one
    epoch of a few small batches, windows, crops and prediction context at 1/7, on the CPU
    in 32-bit precision. Model, input, loss, optimiser, schedule, sampler weights,
    augmentation, stitching, TTA and delivery stay as the file has them."""
    spec = copy.deepcopy(spec)
    prediction = spec.get("prediction", {})
    if spec.get("models_of"):  # the models' settings are another file's
        _scale_prediction(prediction)
        return spec
    spec.update(epochs=1, batch_size=2, accelerator="cpu", devices=1, precision="32")
    sampler = spec.setdefault("sampler", {})
    sampler["samples_per_epoch"] = 4
    if sampler.get("window"):
        sampler["window"] = _scaled(sampler["window"])
    augmentation = spec.get("augmentation", {})
    augmentation["train"] = [_scaled_transform(t) for t in augmentation.get("train", [])]
    _scale_prediction(prediction)
    return spec


def _scale_prediction(prediction: dict) -> None:
    for key in ("window", "kept"):
        if prediction.get(key):
            prediction[key] = _scaled(prediction[key])


def tiny_experiment(folder: Path, name: str = "tiny", **changes):
    """:data:`TINY` with ``changes``, written to ``folder`` and read as the workflow reads it."""
    import yaml

    from builtup.config.experiment import read_experiment

    path = Path(folder) / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    return read_experiment(path)


def network(architecture: str, encoder: str, encoder_weights=None, **options):
    """A network's settings as an experiment's ``model`` section gives them."""
    from builtup.config.experiment import ModelSettings

    return ModelSettings(architecture, encoder, encoder_weights, 2, options)


def place_imagenet_weights(model: dict, root: Path) -> Path:
    """The file ``fetch_weights`` would write for ``model`` (random weights of the
    right shapes) with its checksum, placed by hand as on an offline cluster."""
    from builtup.config.encoders import LWREFINENET, weights_file
    from builtup.core.checksums import sha256_of
    from builtup.train.models import LWRefineNet

    path = root / weights_file(model["architecture"], model["encoder"], "resources/weights")
    path.parent.mkdir(parents=True, exist_ok=True)
    if model["architecture"].lower() == LWREFINENET:
        encoder = LWRefineNet.timm_encoder(model["encoder"])
    else:
        import segmentation_models_pytorch as smp

        encoder = smp.encoders.get_encoder(model["encoder"], weights=None)
    import torch

    torch.save(encoder.state_dict(), path)
    Path(f"{path}.sha256").write_text(f"{sha256_of(path)}  {path.name}\n")
    return path


# Two training cities and one test city: the smallest DAG that reaches the shapefiles.
SMALL_DAG_CITIES = ["38SLF_Mosul", "38SMA_Najaf", "38SLD_Tikrit"]


def rewrite_pixel(path):
    """Change one valid pixel of a raw scene (new content, newer mtime)."""
    with rasterio.open(path, "r+") as dst:
        window = rasterio.windows.Window(128, 128, 1, 1)
        dst.write(dst.read(1, window=window) * 1.5, 1, window=window)


def write_raster(path, data, *, transform=ORIGIN, crs=UTM, nodata=0.0, dtype="float32"):
    """Write ``data`` (H, W) or (C, H, W) as a GeoTIFF and return its path."""
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "width": data.shape[2],
        "height": data.shape[1],
        "count": data.shape[0],
        "dtype": dtype,
        "transform": transform,
        "nodata": nodata,
    }
    if crs is not None:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data.astype(dtype))
    return path


def write_polygons(path, polygons, crs="EPSG:4326", driver="ESRI Shapefile"):
    schema = {"geometry": "Polygon", "properties": {"DN": "int"}}
    with fiona.open(path, "w", driver=driver, crs=crs, schema=schema) as dst:
        for polygon in polygons:
            dst.write({"geometry": mapping(polygon), "properties": {"DN": 255}})
    return Path(path)


def quiet_trainer(**options):
    """A Lightning trainer without logger, checkpoints, validation or progress output."""
    import lightning as L

    return L.Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        **options,
    )


# The two pytest-xdist workers (pyproject: -n 2 --dist loadfile, a file's tests on one
# worker) take the files in this order: the longest DAG runs first, so that both workers end
# at about the same time; the session's smallest DAG serves the two files after the first.
LONGEST_FIRST = (
    "tests/workflow/test_end_to_end.py",
    "tests/workflow/test_bad_input.py",
    "tests/workflow/test_faults.py",
    "tests/workflow/test_slurm.py",
    "tests/workflow/test_training.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: position for position, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def scene_pair(tmp_path, rng):
    """A linear VV/VH pair, 300 x 260 px, with a nodata wedge in the top-left corner."""
    vv = rng.gamma(4.4, 0.1 / 4.4, (260, 300)).astype("float32")
    vh = rng.gamma(4.4, 0.02 / 4.4, (260, 300)).astype("float32")
    rows, cols = np.mgrid[:260, :300]
    wedge = cols < 40 - rows // 4
    vv[wedge] = 0
    vh[wedge] = 0
    return write_raster(tmp_path / "vv.tif", vv), write_raster(tmp_path / "vh.tif", vh), wedge


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory):
    """The demo data set at 256 px, generated once for the session, with its sheet."""
    base = tmp_path_factory.mktemp("tiny_demo")
    from builtup.demo import generator as demo

    demo.generate(base / "resources" / "demo", size=256)
    return base / "resources" / "demo"


class Sandbox:
    """A copy of the workflow as a fresh clone has it, configured for tiny data (256 px scenes);
    its training and prediction jobs take one core each unless ``shipped_profile``."""

    def __init__(self, root: Path, *, shipped_profile: bool = False):
        self.root = root
        for name in ("workflow", "scripts", "config", "envs"):
            shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("*.egg-info"))
        self.config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
        self.config["demo"]["size"] = 256
        self.config["tiles"]["size"] = 128
        self.config["tiles"]["min_overlap"] = 16
        self.write_config()
        if not shipped_profile:
            self.one_thread_per_job(*TORCH_RULES)

    @classmethod
    def copy(cls, other: Sandbox, root: Path) -> Sandbox:
        """A copy of ``other`` with everything it made (results and Snakemake's records)."""
        shutil.copytree(other.root, root, symlinks=True, dirs_exist_ok=True)
        box = cls.__new__(cls)
        box.root, box.config = root, copy.deepcopy(other.config)
        return box

    def write_config(self, config=None):
        text = yaml.safe_dump(config or self.config, sort_keys=False)
        (self.root / "config" / "config.yaml").write_text(text)

    def snakemake(self, *args, timeout=900) -> subprocess.CompletedProcess:
        exe = Path(sys.executable).with_name("snakemake")
        return subprocess.run(
            [str(exe), "--cores", "2", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def small_dag(self, cities: list[str], experiment: dict) -> None:
        """Restrict the run to ``cities``, one acquisition each, and one experiment ``tiny``."""
        path = self.root / "config" / "scenes.tsv"
        sheet = read_sheet(path)
        sheet[sheet["city"].isin(cities)].drop_duplicates("city").to_csv(
            path, sep="\t", index=False
        )
        (self.root / "config/experiments/tiny.yaml").write_text(yaml.safe_dump(experiment))
        self.config.update(cities=cities, experiments=["tiny"], recipes=[experiment["recipe"]])
        self.write_config()

    def one_thread_per_job(self, *rules: str) -> None:
        """Jobs of ``rules`` take one core each in every later run, so that two run side by
        side on the two cores (most of a tiny job is its single-threaded start)."""
        profile = self.root / "workflow/profiles/default/config.yaml"
        settings = yaml.safe_load(profile.read_text())
        settings["set-threads"] = [f"{rule}=1" for rule in rules]
        profile.write_text(yaml.safe_dump(settings))

    def stale_jobs(self, *args) -> dict[str, int]:
        """Jobs a dry run would execute, counted per rule."""
        result = self.snakemake("-n", *args)
        assert result.returncode == 0, result.stderr[-2000:]
        text = result.stdout + result.stderr
        if "Nothing to be done" in text:
            return {}
        table = text.split("Job stats:", 1)[1]
        return {
            m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m[1] != "total"
        }

    def sheet_rows(self, city: str) -> list[dict]:
        sheet = read_sheet(self.root / "config" / "scenes.tsv")
        return sheet[sheet["city"] == city].to_dict("records")

    def raw(self, city: str, scene: str, pol: str = "vv") -> Path:
        (row,) = [row for row in self.sheet_rows(city) if row["scene"] == scene]
        return self.root / row[pol]


@pytest.fixture(scope="session")
def small_dag_finished(tmp_path_factory):
    """The smallest whole DAG (SMALL_DAG_CITIES, one epoch), run once for the session.

    Tests must not change it: they work on a :meth:`Sandbox.copy`.
    """
    box = Sandbox(tmp_path_factory.mktemp("small_dag"))
    box.small_dag(SMALL_DAG_CITIES, SMALL_DAG_EXPERIMENT)
    result = box.snakemake()
    assert result.returncode == 0, result.stderr[-4000:]
    return box


@pytest.fixture
def shared_sample():
    if not SHARED_SAMPLE.is_dir():
        pytest.skip(
            "../shared/data/sen1floods11_sample is absent (only on developer machines and CI)"
        )
    return SHARED_SAMPLE

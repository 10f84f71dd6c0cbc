"""The smallest whole DAG at its edges: determinism of clean runs, a job killed mid-write,
cities of a single acquisition.

(A training job killed mid-epoch is in test_training.py: it resumes from its last checkpoint.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml

from builtup.core.bands import stacked_scenes

from conftest import SMALL_DAG_CITIES, SMALL_DAG_EXPERIMENT, Sandbox, rewrite_pixel

pytestmark = pytest.mark.slow

BYTE_IDENTICAL = ("results/masks/*/*.tif", "results/tiles/*/*/*", "results/folds/*/*")
VICTIM = "results/predictions/tiny/38SLD_Tikrit"  # the prediction of the test city


def small_dag(root: Path) -> Sandbox:
    box = Sandbox(root)
    box.small_dag(SMALL_DAG_CITIES, SMALL_DAG_EXPERIMENT)
    return box


@pytest.fixture
def reference(small_dag_finished):
    return small_dag_finished


def files(box: Sandbox, patterns) -> dict[str, bytes]:
    return {
        str(path.relative_to(box.root)): path.read_bytes()
        for pattern in patterns
        for path in sorted(box.root.glob(pattern))
        if not path.name.endswith(".part")
    }


def metrics(box: Sandbox) -> dict:
    summary = json.loads((box.root / "results/evaluation/tiny/summary.json").read_text())
    return {"overall": summary["overall"], "threshold": summary["threshold"]}


def test_two_clean_runs_are_identical(reference, tmp_path):
    """The second run also prepares the data on 2 threads: the outputs must not change."""
    again = small_dag(tmp_path)
    again.config["preparation"] = {"threads": 2}
    again.write_config()
    result = again.snakemake()
    assert result.returncode == 0, result.stderr[-4000:]
    stats_logs = list((again.root / "results/logs/tile_stats").rglob("*.log"))
    assert stats_logs and all("2 threads" in log.read_text() for log in stats_logs)

    expected = files(reference, BYTE_IDENTICAL)
    assert len(expected) > 10 and files(again, BYTE_IDENTICAL) == expected
    assert metrics(again) == metrics(reference)


def kill_when_running(command, cwd: Path, log: Path, output: Path, timeout=600) -> None:
    """Start ``command``; SIGKILL its whole process group once ``log`` exists but ``output`` not."""
    process = subprocess.Popen(command, cwd=cwd, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not (log.exists() and not output.exists()):
            assert process.poll() is None, "the run ended before the job started"
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def test_a_job_killed_mid_run_is_redone_to_the_same_result(reference, tmp_path):
    box = small_dag(tmp_path)
    scene = next(reference.root.glob(f"{VICTIM}/*.tif")).stem
    output = box.root / VICTIM / f"{scene}.tif"
    log = box.root / f"results/logs/predict_scene/tiny/38SLD_Tikrit/{scene}.log"
    exe = Path(sys.executable).with_name("snakemake")
    kill_when_running([str(exe), "--cores", "2"], box.root, log, output)
    assert not output.exists()  # nothing finished-looking is left behind

    assert box.snakemake("--unlock").returncode == 0  # the hard kill left Snakemake's lock
    result = box.snakemake()  # the default profile has rerun-incomplete
    assert result.returncode == 0, result.stderr[-4000:]

    outputs = (*BYTE_IDENTICAL, "results/predictions/tiny/*/*.tif", "results/submission/tiny/*")
    assert files(box, outputs) == files(reference, outputs)
    assert metrics(box) == metrics(reference)


def test_a_changed_raw_scene_makes_only_its_chain_stale(reference, tmp_path):
    box = Sandbox.copy(reference, tmp_path)
    assert box.stale_jobs() == {}
    scene = next(box.root.glob(f"{VICTIM}/*.tif")).stem
    rewrite_pixel(box.raw("38SLD_Tikrit", scene, "vh"))
    test_city_chain = [
        "compose_raster",  # the scene
        "predict_scene",
        "temporal_stack",  # its city's stack
        "aggregate_city",  # its city
        "submission",
        "baseline",  # the baselines, which read every labelled scene
        "evaluate",  # the experiment's metrics
        "leaderboard",
        "all",
    ]
    # every quicklook states its scene's F1 from the experiment's metrics table
    quicklooks = len(list(box.root.glob("results/quicklooks/tiny/*/*.png")))
    assert quicklooks == 3
    stale = {**dict.fromkeys(test_city_chain, 1), "quicklook": quicklooks, "rasterize_mask": 2}
    assert box.stale_jobs() == stale  # rasterize_mask: its training and its evaluation mask


def test_a_stack_model_of_single_acquisition_cities_still_predicts(small_dag_finished, tmp_path):
    """Every city of the smallest DAG has one acquisition: its stack's spread is 0, constant
    over the whole fold, and must not break the normalisation or the predictions."""
    box = Sandbox.copy(small_dag_finished, tmp_path / "box")
    spec = {**SMALL_DAG_EXPERIMENT, "recipe": "stack_mean_std"}
    (box.root / "config/experiments/tiny.yaml").write_text(yaml.safe_dump(spec))
    box.config["recipes"] = ["stack_mean_std"]
    box.write_config()
    result = box.snakemake("results/evaluation/tiny/summary.json")
    assert result.returncode == 0, result.stderr[-3000:]
    fold = json.loads((box.root / "results/folds/38SLF_Mosul/summary.json").read_text())
    assert fold["normalisation"]["stack_mean_std"]["std"][2:] == [1.0, 1.0]  # constant 0
    for city in SMALL_DAG_CITIES:
        with (
            rasterio.open(box.root / f"results/stacks/{city}.tif") as stack,
            rasterio.open(box.root / f"results/predictions/tiny/{city}/stack.tif") as pred,
        ):
            assert len(stacked_scenes(stack.descriptions)) == 1
            absent = np.isnan(stack.read()).all(axis=0)
            values = pred.read(1)
            np.testing.assert_array_equal(values == 255, absent)
            assert len(np.unique(values[values != 255])) > 10  # a map, not a constant
    metrics = json.loads((box.root / "results/evaluation/tiny/summary.json").read_text())
    assert 0 < metrics["overall"]["test"]["f1"] <= 1

"""GPU acceptance checks (``make gpu-check``; pytest marker ``gpu``): every shipped experiment
trains a few steps at its own precision and memory format, DDP over every visible GPU through
the train rule, and a CUDA scene prediction that agrees with the CPU's.

Without a CUDA device the ``gpu`` tests skip; the helpers run on the CPU in the ordinary
suite so that the GPU path is not dead code between two GPU runs. Each GPU test appends a
row (experiment, step time, peak GPU memory, pass/fail) to the file named by
BUILTUP_GPU_TABLE, which ``benchmarks/gpu_check.py`` prints as one table.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, Dataset

from builtup.config.experiment import read_experiment
from builtup.core.probability import PROB_NODATA, PROBABILITY
from builtup.core.recipes import get_recipe
from builtup.predict.scene import predict_scene
from builtup.train.loop import deterministic_setting
from builtup.train.task import SegmentationTask

from conftest import ORIGIN, REPO, TINY, Sandbox, quiet_trainer, write_raster

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device: GPU acceptance checks skipped")
EXPERIMENTS = sorted((REPO / "config/experiments").glob("*.yaml"))
# CUDA runs the networks under bf16 autocast, the CPU in float32: probabilities (uint8 levels
# of 1/254) may differ by a few levels where the logits are close to 0, rarely more.
LEVELS_P999, LEVELS_MAX, DECISIONS_AGREE = 3, 16, 0.999


class RepeatedBatch(Dataset):
    """One fixed batch of channels-last tiles, served ``steps`` times (a model must fit it)."""

    def __init__(self, channels: int, size: int, batch: int, steps: int):
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(batch, size, size, channels, generator=generator)
        self.y = (self.x[..., 0] > 0.3).to(torch.uint8)
        self.batch, self.steps = batch, steps

    def __len__(self):
        return self.batch * self.steps

    def __getitem__(self, index):
        return self.x[index % self.batch], self.y[index % self.batch]


class StepLog(Callback):
    """Wall time and loss of every training step (the device synchronised around it)."""

    def __init__(self):
        self.seconds, self.losses, self.started = [], [], 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)
        self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)
        self.seconds.append(time.perf_counter() - self.started)
        self.losses.append(float(outputs["loss"]))


def cpu_precision(precision: str) -> str:
    return "bf16-mixed" if precision == "16-mixed" else precision  # no float16 AMP on CPUs


def train_steps(path: Path, device: str, steps: int, size: int, out: Path | None = None) -> dict:
    """A few steps of ``path``'s experiment (random initialisation) on one repeated batch."""
    experiment = read_experiment(path)
    experiment = replace(experiment, model=replace(experiment.model, encoder_weights=None))
    accelerator = "gpu" if device == "cuda" else "cpu"
    precision = experiment.precision
    precision = precision if device == "cuda" else cpu_precision(precision)
    task = SegmentationTask(experiment)
    data = RepeatedBatch(experiment.channels, size, experiment.batch_size, steps)
    steps_log = StepLog()
    trainer = quiet_trainer(
        accelerator=accelerator,
        devices=1,
        precision=precision,
        max_steps=steps,
        gradient_clip_val=experiment.gradient_clip,
        deterministic=deterministic_setting(accelerator),
        callbacks=[steps_log],
    )
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(task, DataLoader(data, batch_size=experiment.batch_size))
    if out is not None:
        trainer.save_checkpoint(out)
    losses = steps_log.losses
    head, tail = np.mean(losses[:3]), np.mean(losses[-3:])
    return {
        "experiment": experiment.name,
        "step_ms": 1000 * statistics.median(steps_log.seconds[3:] or steps_log.seconds),
        "peak_gb": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan"),
        "ok": bool(np.isfinite(losses).all() and tail < head),
        "detail": f"loss {head:.3f} -> {tail:.3f}",
    }


def scene(path: Path, size: int) -> Path:
    """A linear 3-band scene with bright blocks (built-up-like) and a nodata border."""
    rng = np.random.default_rng(0)
    image = rng.gamma(4.4, 0.05 / 4.4, (3, size, size)).astype("float32")
    blocks = (np.add.outer(np.arange(size) // 97, np.arange(size) // 131) % 3) == 0
    image[:, blocks] *= 6
    image[:, :, : size // 50] = 0
    return write_raster(path, image, transform=ORIGIN)


def compare_devices(
    tmp_path: Path, experiment: Path, size: int, devices=("cuda", "cpu"), precision="auto"
) -> dict:
    """Predict one scene from one checkpoint on two devices (the experiment's TTA, or flips),
    the first under autocast to ``precision`` (``prediction.precision``)."""
    spec = yaml.safe_load(experiment.read_text())
    spec["model"]["encoder_weights"] = None
    spec.setdefault("prediction", {})["precision"] = precision
    spec["tta"] = spec.get("tta", "none") if spec.get("tta", "none") != "none" else "flips"
    path = tmp_path / f"{experiment.stem}.yaml"
    path.write_text(yaml.safe_dump(spec))
    checkpoint = tmp_path / "model.ckpt"
    train_steps(path, devices[0], steps=4, size=128, out=checkpoint)
    channels = get_recipe(spec["recipe"]).channels
    summary = tmp_path / "summary.json"
    norm = {"mean": [0.0] * channels, "std": [1.0] * channels}
    summary.write_text(json.dumps({"normalisation": {spec["recipe"]: norm}}))
    raster = scene(tmp_path / "scene.tif", size)
    maps, seconds = [], []
    for device in devices:
        out = tmp_path / f"{device}.tif"
        started = time.perf_counter()
        settings = read_experiment(path)
        prediction = replace(settings.prediction, device=device)
        predict_scene(raster, settings, prediction, [checkpoint], [summary], out, PROBABILITY)
        seconds.append(time.perf_counter() - started)
        with rasterio.open(out) as src:
            maps.append(src.read(1).astype(int))
    valid = maps[0] != PROB_NODATA
    assert np.array_equal(valid, maps[1] != PROB_NODATA)
    diff = np.abs(maps[0] - maps[1])[valid]
    agree = np.mean((maps[0][valid] >= 127) == (maps[1][valid] >= 127))
    p999 = float(np.percentile(diff, 99.9))
    return {
        "experiment": f"predict {size}² {spec['tta']} TTA, {precision} ({experiment.stem})",
        "step_ms": 1000 * seconds[0],
        "peak_gb": torch.cuda.max_memory_allocated() / 2**30 if CUDA else float("nan"),
        "ok": p999 <= LEVELS_P999 and diff.max() <= LEVELS_MAX and agree >= DECISIONS_AGREE,
        "detail": f"vs {devices[1]}: p99.9 {p999:.0f}, max {diff.max()} levels, "
        f"{100 * agree:.3f}% same decision; {devices[1]} {seconds[1]:.1f} s",
    }


def record(row: dict) -> None:
    table = os.environ.get("BUILTUP_GPU_TABLE")
    if table:
        with open(table, "a") as out:
            out.write(json.dumps(row) + "\n")


# --- on the CPU, in the ordinary suite: the helpers of the GPU checks work -------------------


def test_train_steps_on_the_cpu_fit_one_batch():
    row = train_steps(REPO / "config/experiments/demo.yaml", "cpu", steps=8, size=64)
    assert row["ok"], row


def test_device_comparison_on_the_cpu(tmp_path):
    row = compare_devices(
        tmp_path, REPO / "config/experiments/demo.yaml", size=300, devices=("cpu", "cpu")
    )
    assert row["ok"] and "p99.9 0, max 0 levels" in row["detail"], row


# --- on a CUDA machine: make gpu-check ------------------------------------------------------


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("experiment", EXPERIMENTS, ids=lambda p: p.stem)
def test_shipped_experiment_trains_on_cuda(experiment):
    row = train_steps(experiment, "cuda", steps=20, size=256)
    record(row)
    assert row["ok"], row


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("precision", ["auto", "fp16", "bf16"])
def test_cuda_prediction_matches_the_cpu(tmp_path, precision):
    """Under each autocast dtype (auto: bf16 where supported, else fp16)."""
    experiment = REPO / "config/experiments/lwrefinenet.yaml"
    row = compare_devices(tmp_path, experiment, size=2048, precision=precision)
    record(row)
    assert row["ok"], row


@pytest.mark.gpu
@needs_cuda
def test_ddp_over_every_visible_gpu_through_the_train_rule(tmp_path):
    count = torch.cuda.device_count()
    box = Sandbox(tmp_path, shipped_profile=True)  # the loader's workers as a user has them
    spec = {**TINY, "accelerator": "gpu", "devices": count, "epochs": 1, "precision": "bf16-mixed"}
    if count > 1:
        spec["strategy"] = "ddp"
    (box.root / "config/experiments/tiny.yaml").write_text(yaml.safe_dump(spec))
    box.config["experiments"] = ["tiny"]
    box.write_config()
    target = "results/models/tiny/38SLF_Mosul/model.ckpt"
    started = time.perf_counter()
    result = box.snakemake(target, "--resources", f"gpu={count}", timeout=540)
    seconds = time.perf_counter() - started
    log_path = box.root / "results/logs/train/tiny/38SLF_Mosul.log"
    log = log_path.read_text() if log_path.exists() else ""
    ok = result.returncode == 0 and all(
        f"training process {k + 1} of {count} on cuda" in log for k in range(count)
    )
    record(
        {
            "experiment": f"train rule, DDP on {count} GPU(s)",
            "step_ms": 1000 * seconds,
            "peak_gb": float("nan"),
            "ok": ok,
            "detail": "whole rule (preparation included)",
        }
    )
    assert ok, (result.stderr[-3000:], log[-3000:])


@pytest.mark.skipif(CUDA, reason="a CUDA device is present: make gpu-check runs the checks")
def test_gpu_check_skips_with_one_line_without_cuda():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks/gpu_check.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0
    assert result.stdout.strip().splitlines() == [
        "gpu-check: no CUDA device on this machine: skipped"
    ]

"""Learning-rate schedules traced through real (tiny) Lightning runs; device determinism."""

import math

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, TensorDataset

from builtup.config.experiment import ScheduleSettings, read_experiment
from builtup.train.loop import deterministic_setting
from builtup.train.task import SegmentationTask

from conftest import TINY, quiet_trainer

LR = 0.01
EPOCHS = 4
BATCHES = 5  # per epoch; with accumulate 2 Lightning makes 3 optimiser steps of them
STEPS_PER_EPOCH = 3


class Tiles(L.LightningDataModule):
    def train_dataloader(self):
        generator = torch.Generator().manual_seed(0)
        x = torch.rand(BATCHES * 2, 32, 32, 3, generator=generator)
        y = (torch.rand(BATCHES * 2, 32, 32, generator=generator) > 0.5).long()
        return DataLoader(TensorDataset(x, y), batch_size=2)


class LearningRates(Callback):
    def __init__(self):
        self.trace = []

    def on_before_optimizer_step(self, trainer, module, optimizer):
        self.trace.append(optimizer.param_groups[0]["lr"])


def lr_trace(tmp_path, schedule: dict) -> list[float]:
    path = tmp_path / "exp.yaml"
    spec = {**TINY, "optimizer": {"name": "sgd", "lr": LR}, "schedule": schedule, "accumulate": 2}
    path.write_text(yaml.safe_dump(spec))
    rates = LearningRates()
    trainer = quiet_trainer(
        accelerator="cpu",
        max_epochs=EPOCHS,
        accumulate_grad_batches=2,
        callbacks=[rates],
        default_root_dir=tmp_path,
    )
    trainer.fit(SegmentationTask(read_experiment(path)), datamodule=Tiles())
    assert len(rates.trace) == EPOCHS * STEPS_PER_EPOCH
    return rates.trace


def poly(step, total, power=0.9):
    return LR * (1 - step / total) ** power


def seeds_three_quarters(iteration, n, a=0.9):
    """lambda_lr_scheduler of configs/train/baseline_se_resnext50-FPN_on_db_lr_restart.py
    (vfdev-5/UNOSAT_Challenge, commit 0c72022), as written there."""
    if iteration < 3 * n // 4:
        n = 3 * n // 4
        return LR * pow((1.0 - 1.0 * iteration / n), a)
    iteration -= 3 * n // 4
    n -= 3 * n // 4 + 1
    return 0.25 * LR * pow((1.0 - 1.0 * iteration / n), a)


@pytest.mark.parametrize(
    "schedule, expected",
    [
        ({"name": "poly", "power": 0.9}, lambda k: poly(k, EPOCHS * STEPS_PER_EPOCH)),
        (
            {"name": "poly_restart", "power": 0.9, "restart_every": 2},
            lambda k: poly(k % (2 * STEPS_PER_EPOCH), 2 * STEPS_PER_EPOCH),
        ),
        (  # the 3rd place's FPN: a second half at half the learning rate
            {"name": "poly_restart", "power": 0.9, "restart_every": 2, "restart_factor": 0.5},
            lambda k: (
                0.5 ** (k // (2 * STEPS_PER_EPOCH))
                * poly(k % (2 * STEPS_PER_EPOCH), 2 * STEPS_PER_EPOCH)
            ),
        ),
        (  # the 3rd place's lr_restart: one restart at 3/4 of the run, at a quarter
            {"name": "poly_restart", "restart_at": 0.75, "restart_factor": 0.25},
            lambda k: seeds_three_quarters(k, EPOCHS * STEPS_PER_EPOCH),
        ),
        (
            {"name": "cosine"},
            lambda k: LR * (1 + math.cos(math.pi * k / (EPOCHS * STEPS_PER_EPOCH))) / 2,
        ),
    ],
    ids=["poly", "poly_restart", "poly_restart_halving", "poly_restart_at", "cosine"],
)
def test_learning_rate_trace_of_a_lightning_run(tmp_path, schedule, expected):
    trace = lr_trace(tmp_path, schedule)
    assert trace == pytest.approx([expected(k) for k in range(len(trace))], rel=1e-6)


def test_plateau_without_validation_follows_the_training_loss(tmp_path):
    trace = lr_trace(tmp_path, {"name": "plateau", "patience": 0, "factor": 0.5})
    assert trace[0] == LR and all(0 < lr <= LR for lr in trace)


def test_bit_reproducible_algorithms_on_the_cpu_only(monkeypatch):
    assert deterministic_setting("cpu") is True
    assert deterministic_setting("gpu") is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert deterministic_setting("auto") is True
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert deterministic_setting("auto") is False


def test_plateau_on_the_training_loss_waits_for_the_loss_to_stop_falling():
    from builtup.train.optim import build_scheduler
    from builtup.train.task import PLATEAU_MONITOR

    schedule = ScheduleSettings("plateau", 0.9, 10, None, 1.0, patience=0, factor=0.25)
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=3e-4)
    config = build_scheduler(optimizer, schedule, 100, 10, PLATEAU_MONITOR)
    assert config["monitor"] == "train/loss" and config["interval"] == "epoch"
    for loss in (1.0, 0.8, 0.6):  # falling: the rate stays
        config["scheduler"].step(loss)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(3e-4)
    config["scheduler"].step(0.7)  # the first epoch without a lower loss
    assert optimizer.param_groups[0]["lr"] == pytest.approx(3e-4 * 0.25)

"""Optimisers and learning-rate schedules of an experiment."""

from __future__ import annotations

from functools import partial

import torch

from builtup.config.experiment import OptimizerSettings, ScheduleSettings


def build_optimizer(parameters, settings: OptimizerSettings) -> torch.optim.Optimizer:
    name, lr, decay = settings.name, settings.lr, settings.weight_decay
    if name == "sgd":
        return torch.optim.SGD(
            parameters,
            lr=lr,
            momentum=settings.momentum,
            nesterov=settings.nesterov,
            weight_decay=decay,
        )
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=decay)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=decay)
    raise ValueError(f"unknown optimizer {name!r}")


def poly_factor(step: int, total: int, power: float) -> float:
    """(1 - step / total) ** power, the 3rd place's per-iteration polynomial decay."""
    return max(0.0, 1.0 - step / max(total, 1)) ** power


def one_restart(step: int, schedule, total: int) -> float:
    """A poly over the first ``restart_at`` of the run, then ``restart_factor`` times a poly
    that reaches 0 on the last step (the 3rd place's lr_restart, written as it wrote it)."""
    first = max(int(schedule.restart_at * total), 1)
    if step < first:
        return poly_factor(step, first, schedule.power)
    rest = max(total - first - 1, 1)
    return schedule.restart_factor * poly_factor(step - first, rest, schedule.power)


def build_scheduler(
    optimizer,
    schedule: ScheduleSettings,
    total_steps: int,
    steps_per_epoch: int,
    monitor: tuple[str, str],
) -> dict | None:
    """A Lightning lr-scheduler config; poly/cosine step every optimiser step, plateau every
    epoch on ``monitor`` (metric name, "max" or "min")."""
    name = schedule.name
    if name == "constant":
        return None
    if name == "plateau":
        metric, mode = monitor
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=mode, factor=schedule.factor, patience=schedule.patience
        )
        return {"scheduler": scheduler, "interval": "epoch", "monitor": metric}
    if name == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1))
    elif name == "poly":
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: poly_factor(step, total_steps, schedule.power)
        )
    elif name == "poly_restart" and schedule.restart_at is not None:
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, partial(one_restart, schedule=schedule, total=total_steps)
        )
    elif name == "poly_restart":
        period = max(schedule.restart_every * steps_per_epoch, 1)
        decay = schedule.restart_factor
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: (
                decay ** (step // period) * poly_factor(step % period, period, schedule.power)
            ),
        )
    else:
        raise ValueError(f"unknown schedule {name!r}")
    return {"scheduler": scheduler, "interval": "step"}

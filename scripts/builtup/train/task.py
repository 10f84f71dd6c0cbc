"""The Lightning task of one experiment, and a checkpoint read back as one."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch

from builtup.config.experiment import Experiment
from builtup.core.scores import scores
from builtup.train.checkpoint import read_checkpoint
from builtup.train.losses import WeightedSum
from builtup.train.metrics import confusion_matrix
from builtup.train.models import build_model
from builtup.train.optim import build_optimizer, build_scheduler
from builtup.train.tensorfile import load_fitting

log = logging.getLogger(__name__)

# What a plateau schedule watches: the training loss, never the held-out city, whose
# out-of-fold score would otherwise have tuned the run
PLATEAU_MONITOR = ("train/loss", "min")


class SegmentationTask(L.LightningModule):
    """Model, loss, optimiser and schedule of one experiment; metrics from a confusion matrix.

    ``data`` identifies what it is trained on (:func:`data_identity`); it is kept in the
    checkpoint as plain data beside the experiment, which keeps its ``encoder_weights`` as
    written (``imagenet``); ``weights_file`` is where the encoder's starting weights are read
    from (:func:`build_model`). ``initial_weights=False`` builds the network without reading
    or downloading them (a checkpoint about to be loaded holds every weight).
    """

    def __init__(
        self,
        experiment: Experiment,
        data: dict | None = None,
        initial_weights: bool = True,
        weights_file: str | Path | None = None,
    ):
        super().__init__()
        self.save_hyperparameters({"experiment": experiment.to_dict(), "data": data})
        self.experiment, self.data = experiment, data
        model = experiment.model
        if not initial_weights:
            model = dataclasses.replace(model, encoder_weights=None)
        self.model = build_model(
            model,
            experiment.channels,
            weights_file if initial_weights else None,
            fused=experiment.fused,
        )
        if experiment.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward_model = torch.compile(self.model) if experiment.compile else self.model
        self.loss = WeightedSum(experiment.loss)
        self.val_matrix = torch.zeros(2, 2, dtype=torch.long)

    def forward(self, x):
        """Logits of a channels-last batch (N, H, W, C) from the loaders."""
        x = x.permute(0, 3, 1, 2)  # (N, C, H, W) with channels-last strides, no copy
        if not self.experiment.channels_last:
            x = x.contiguous()
        return self.forward_model(x)

    def on_fit_start(self):
        trainer = self.trainer
        log.info(
            "training process %d of %d on %s",
            trainer.global_rank + 1,
            trainer.world_size,
            self.device,
        )

    def training_step(self, batch, _):
        x, y = batch
        loss = self.loss(self(x), y.long())
        self.log(
            "train/loss", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=len(x)
        )
        return loss

    def on_validation_epoch_start(self):
        self.val_matrix = torch.zeros(2, 2, dtype=torch.long, device=self.device)

    def validation_step(self, batch, _):
        x, y = batch
        logits = self(x)
        self.log(
            "val/loss",
            self.loss(logits, y.long()),
            on_epoch=True,
            sync_dist=True,
            batch_size=len(x),
        )
        self.val_matrix += confusion_matrix(logits.argmax(1), y)

    def on_validation_epoch_end(self):
        matrix = self.trainer.strategy.reduce(self.val_matrix, reduce_op="sum")
        for key, value in scores(matrix).items():
            self.log(f"val/{key}", float(np.nan_to_num(value)), sync_dist=False)

    def configure_optimizers(self):
        optimizer = build_optimizer(self.parameters(), self.experiment.optimizer)
        # optimiser steps as Lightning counts them (a partial accumulation is a step);
        # num_training_batches is not known yet here, estimated_stepping_batches is
        total_steps = int(self.trainer.estimated_stepping_batches)
        steps_per_epoch = max(total_steps // max(self.trainer.max_epochs, 1), 1)
        scheduler = build_scheduler(
            optimizer, self.experiment.schedule, total_steps, steps_per_epoch, PLATEAU_MONITOR
        )
        return (
            optimizer if scheduler is None else {"optimizer": optimizer, "lr_scheduler": scheduler}
        )


def load_task(path) -> SegmentationTask:
    """The trained task of a checkpoint, built without initial encoder weights."""
    checkpoint = read_checkpoint(path)
    task = SegmentationTask(checkpoint.experiment, checkpoint.data, initial_weights=False)
    load_fitting(task, checkpoint.state_dict, path, "the experiment it names")
    return task

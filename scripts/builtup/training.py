"""Training one model per (experiment, fold) with Lightning: resumable, logged, reproducible."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import shutil
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch.utils.data import DataLoader, DistributedSampler

from builtup.augment import build_augmentation
from builtup.data import TargetWeightedSampler, TileDataset, fold_tiles, seed_worker_augmentation
from builtup.errors import InputError
from builtup.experiment import input_channels
from builtup.figures import plot_curves, plot_val_samples
from builtup.losses import WeightedSum
from builtup.metrics import confusion_matrix, scores
from builtup.models import build_model
from builtup.optim import build_optimizer, build_scheduler
from builtup.rasters import atomic_path

log = logging.getLogger(__name__)

MONITOR = "val/iou_1"


class SegmentationTask(L.LightningModule):
    """Model, loss, optimiser and schedule of one experiment; metrics from a confusion matrix.

    ``data`` identifies what it is trained on (:func:`data_identity`); it is kept in the
    checkpoint as plain data beside the experiment. ``initial_weights=False`` builds the
    network without reading or downloading its encoder's starting weights (a checkpoint
    about to be loaded holds every weight).
    """

    def __init__(self, spec: dict, data: dict | None = None, initial_weights: bool = True):
        super().__init__()
        self.save_hyperparameters({"spec": spec, "data": data})
        self.spec, self.data = spec, data
        model_spec = (
            spec["model"] if initial_weights else {**spec["model"], "encoder_weights": None}
        )
        self.model = build_model(model_spec, input_channels(spec))
        if spec["channels_last"]:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward_model = torch.compile(self.model) if spec["compile"] else self.model
        self.loss = WeightedSum(spec["loss"])
        self.val_matrix = torch.zeros(2, 2, dtype=torch.long)

    def forward(self, x):
        """Logits of a channels-last batch (N, H, W, C) from the loaders."""
        x = x.permute(0, 3, 1, 2)  # (N, C, H, W) with channels-last strides, no copy
        if not self.spec["channels_last"]:
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
        optimizer = build_optimizer(self.parameters(), self.spec["optimizer"])
        # optimiser steps as Lightning counts them (a partial accumulation is a step);
        # num_training_batches is not known yet here, estimated_stepping_batches is
        total_steps = int(self.trainer.estimated_stepping_batches)
        steps_per_epoch = max(total_steps // max(self.trainer.max_epochs, 1), 1)
        validating = self.trainer.limit_val_batches != 0
        scheduler = build_scheduler(
            optimizer,
            self.spec["schedule"],
            total_steps,
            steps_per_epoch,
            monitor=(MONITOR, "max") if validating else ("train/loss", "min"),
        )
        return (
            optimizer if scheduler is None else {"optimizer": optimizer, "lr_scheduler": scheduler}
        )


class TrainingData(L.LightningDataModule):
    """The fold's training tiles (weighted sampler, augmented) and validation tiles (whole)."""

    def __init__(self, spec: dict, fold_summary: dict, fold_tiles_tsv, stacks: dict, workers: int):
        super().__init__()
        self.spec, self.workers = spec, workers
        norm = fold_summary["normalisation"].get(spec["recipe"])
        if norm is None:
            raise InputError(fold_tiles_tsv, f"fold has no statistics for recipe {spec['recipe']}")
        train_rows = fold_tiles(fold_tiles_tsv, "train")
        if train_rows.empty:
            raise InputError(fold_tiles_tsv, "no usable training tile (all skipped or none)")
        augmentation = build_augmentation(spec["augmentation"]["train"])
        if augmentation is not None:
            augmentation.set_random_seed(spec["seed"])
        common = (stacks, spec["recipe"], norm["mean"], norm["std"])
        self.train_set = TileDataset(train_rows, *common, augmentation=augmentation)
        self.val_set = TileDataset(fold_tiles(fold_tiles_tsv, "val"), *common)

    def _loader(self, dataset, sampler, batch_size):
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.workers,
            persistent_workers=False,
            worker_init_fn=seed_worker_augmentation,
            pin_memory=torch.cuda.is_available(),
            drop_last=False,
        )

    def train_dataloader(self):
        sampler_spec = self.spec["sampler"]
        sampler = TargetWeightedSampler(
            self.train_set.has_target,
            sampler_spec["with_target"],
            sampler_spec["without_target"],
            sampler_spec["samples_per_epoch"] or len(self.train_set),
            seed=self.spec["seed"],
            rank=self.trainer.global_rank,
            world_size=self.trainer.world_size,
        )
        return self._loader(self.train_set, sampler, self.spec["batch_size"])

    def val_dataloader(self):
        if len(self.val_set) == 0:
            return []
        sampler = None
        if self.trainer.world_size > 1:
            sampler = DistributedSampler(
                self.val_set,
                num_replicas=self.trainer.world_size,
                rank=self.trainer.global_rank,
                shuffle=False,
            )
        return self._loader(self.val_set, sampler, self.spec["batch_size"])


class EpochTable(Callback):
    """A row per epoch in ``metrics.csv`` and a line per epoch in the log; kept in checkpoints."""

    def __init__(self, path: Path):
        self.path, self.rows, self.started = path, [], time.perf_counter()

    def on_train_epoch_start(self, trainer, module):
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer, module):
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        row = {
            "epoch": trainer.current_epoch,
            "step": trainer.global_step,
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
            "seconds": round(time.perf_counter() - self.started, 2),
            **metrics,
        }
        self.rows = [r for r in self.rows if r["epoch"] < row["epoch"]] + [row]
        if trainer.is_global_zero:
            self._write()
            shown = " ".join(
                f"{k} {v:.4g}"
                for k, v in row.items()
                if k.startswith(("train/", "val/l", "val/iou_1", "val/f1"))
            )
            log.info(
                "epoch %d/%d %s lr %.3g (%.1f s)",
                row["epoch"] + 1,
                trainer.max_epochs,
                shown,
                row["lr"],
                row["seconds"],
            )

    def on_fit_end(self, trainer, module):
        if trainer.is_global_zero and self.rows:
            self._write()  # also when a finished run is resumed and trains no further epoch

    def _write(self):
        with atomic_path(self.path) as tmp:
            pd.DataFrame(self.rows).to_csv(tmp, index=False)

    def state_dict(self):
        return {"rows": self.rows}

    def load_state_dict(self, state):
        self.rows = state["rows"]


def data_identity(spec: dict, fold_summary: dict, fold_tiles_tsv) -> dict:
    """What a run is trained on: the fold's normalisation of the experiment's recipe and the
    digest of its tile table (per-tile windows, band statistics and roles, so any change of
    a training scene, its labels or the tiling shows)."""
    return {
        "normalisation": fold_summary["normalisation"].get(spec["recipe"]),
        "tiles_sha256": hashlib.sha256(Path(fold_tiles_tsv).read_bytes()).hexdigest(),
    }


def deterministic_setting(accelerator: str) -> bool:
    """Bit-reproducible algorithms on the CPU; seeded only on CUDA, where cross-entropy on
    4-D logits and the backward of bilinear upsampling and adaptive pooling have no
    deterministic kernel (torch raises under ``use_deterministic_algorithms(True)``)."""
    if accelerator == "auto":
        return not torch.cuda.is_available()
    return accelerator == "cpu"


def read_checkpoint(path) -> dict:
    """A checkpoint read as plain data and tensors only (``weights_only``): a shared file cannot
    run code when it is loaded."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "checkpoint does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise InputError(
            path,
            "refused: the checkpoint holds objects other than plain data and tensors "
            "(loading it could run code)",
        ) from None
    except Exception as err:  # noqa: BLE001 (any loading failure means an unusable checkpoint)
        raise InputError(path, f"cannot be loaded as a model checkpoint: {err}") from None


def load_task(path) -> SegmentationTask:
    """The trained task of a checkpoint, built without initial encoder weights."""
    state = read_checkpoint(path)
    settings = state.get("hyper_parameters", {})
    if "spec" not in settings or "state_dict" not in state:
        raise InputError(path, "not a checkpoint of this workflow (no experiment settings)")
    task = SegmentationTask(settings["spec"], settings.get("data"), initial_weights=False)
    try:
        task.load_state_dict(state["state_dict"])
    except RuntimeError as err:
        raise InputError(path, f"weights do not fit the experiment: {err}") from None
    return task


def train(
    spec: dict,
    fold_summary_path,
    fold_tiles_tsv,
    tile_stacks,
    out_dir,
    *,
    workers: int = 0,
    accelerator: str | None = None,
    devices: int | None = None,
    strategy: str | None = None,
    max_epochs: int | None = None,
) -> dict:
    """Train (or resume) one model; leave model.ckpt, metrics.csv, curves.png, samples.png.

    ``tile_stacks``: the training scenes' :class:`TileSet` by (city, scene)."""
    out_dir = Path(out_dir)
    summary = json.loads(Path(fold_summary_path).read_text())
    L.seed_everything(spec["seed"], workers=True, verbose=False)
    data = TrainingData(spec, summary, fold_tiles_tsv, tile_stacks, workers)
    identity = data_identity(spec, summary, fold_tiles_tsv)
    task = SegmentationTask(spec, identity)
    has_val = len(data.val_set) > 0
    checkpoints = out_dir / "checkpoints"
    saver = ModelCheckpoint(
        dirpath=checkpoints,
        filename="best-{epoch:03d}",
        monitor=MONITOR if has_val else None,
        mode="max",
        save_top_k=spec["checkpoints"]["keep_best"] if has_val else 0,
        save_last=True,
    )
    table = EpochTable(out_dir / "metrics.csv")
    accelerator = accelerator or spec["accelerator"]
    trainer = L.Trainer(
        default_root_dir=out_dir,
        accelerator=accelerator,
        devices=devices or spec["devices"],
        strategy=strategy or spec["strategy"],
        precision=spec["precision"],
        max_epochs=max_epochs or spec["epochs"],
        accumulate_grad_batches=spec["accumulate"],
        gradient_clip_val=spec["gradient_clip"],
        callbacks=[saver, table],
        logger=_loggers(spec, out_dir),
        deterministic=deterministic_setting(accelerator),
        use_distributed_sampler=False,
        enable_progress_bar=sys.stderr.isatty(),
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1.0 if has_val else 0,
        log_every_n_steps=1,
    )
    last = checkpoints / "last.ckpt"
    if last.exists():
        _discard_if_foreign(last, spec, identity)
    if last.exists():
        log.info("resuming from %s", last)
    trainer.fit(
        task, datamodule=data, ckpt_path=str(last) if last.exists() else None, weights_only=True
    )
    if not trainer.is_global_zero:
        return {}
    best = Path(saver.best_model_path) if has_val and saver.best_model_path else last
    with atomic_path(out_dir / "model.ckpt") as tmp:
        shutil.copyfile(best, tmp)
    plot_curves(out_dir / "metrics.csv", out_dir / "curves.png")
    plot_val_samples(
        load_task(best),
        data.val_set if has_val else data.train_set,
        out_dir / "samples.png",
        spec["logging"]["val_samples"],
    )
    result = {"best": str(best), "best_score": float(saver.best_model_score or float("nan"))}
    log.info("model %s (val/iou_1 %.4f)", best.name, result["best_score"])
    return result


def _discard_if_foreign(last: Path, spec: dict, identity: dict) -> None:
    """Remove the checkpoints of a run that another experiment or other data started: a run
    resumes only with the experiment, the fold normalisation and the tile table it began with."""
    try:
        trained = read_checkpoint(last).get("hyper_parameters", {})
    except InputError as err:
        reason = f"cannot be resumed ({err.fault})"
    else:
        if _comparable(trained.get("spec", {})) != _comparable(spec):
            reason = "was trained with other settings"
        elif trained.get("data") != identity:
            reason = "was trained on other data (fold normalisation or tile table changed)"
        else:
            return
    log.info("%s %s: starting afresh", last, reason)
    shutil.rmtree(last.parent)


def _comparable(spec: dict) -> dict:
    """The settings that define a training run (not where its file lies)."""
    return {k: v for k, v in spec.items() if k != "path"}


def _loggers(spec: dict, out_dir: Path):
    loggers = []
    if spec["logging"]["tensorboard"]:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(out_dir, name="tensorboard"))
    if spec["logging"]["mlflow"]:
        try:
            import mlflow  # noqa: F401
            from lightning.pytorch.loggers import MLFlowLogger
        except ImportError:
            raise InputError(
                "logging.mlflow",
                "MLflow is asked for but not installed (pip install mlflow-skinny)",
            ) from None
        # a plain folder store: nothing to set up, readable by `mlflow ui --backend-store-uri`
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        mlruns = Path("results") / "mlruns"
        logger = MLFlowLogger(
            experiment_name="Trainings",
            tracking_uri=f"file:{mlruns.resolve()}",
            run_name=f"{spec['name']}/{out_dir.name}",
        )
        logger.log_hyperparams(_flat(spec))
        logger.experiment.log_artifact(logger.run_id, spec["path"])
        loggers.append(logger)
    return loggers or False


def _flat(spec: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in spec.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat

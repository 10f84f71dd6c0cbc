"""Training one model per (experiment, fold) with Lightning: resumable, logged, reproducible."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from builtup.config.experiment import Experiment
from builtup.core.bands import kind_of
from builtup.core.checksums import sha256_of
from builtup.core.errors import InputError
from builtup.core.rasters import atomic_path
from builtup.prepare.tile_stats import read_statistics
from builtup.train.checkpoint import load_trained
from builtup.train.datamodule import TrainingData
from builtup.train.figures import plot_curves, plot_val_samples
from builtup.train.task import SegmentationTask, load_task
from builtup.train.tensorfile import load_fitting, read_tensors

log = logging.getLogger(__name__)

# what model.ckpt keeps of a Lightning checkpoint: the network and what it was trained with,
# not the optimiser's and loops' state (twice the network's size again with Adam)
DELIVERED = ("state_dict", "hyper_parameters", "epoch", "global_step", "pytorch-lightning_version")


class EpochTable(Callback):
    """A row per epoch in ``metrics.csv`` and a line per epoch in the log; kept in checkpoints.
    An epoch that was not validated has no validation figures (Lightning keeps the last)."""

    def __init__(self, path: Path):
        self.path, self.rows, self.started = path, [], time.perf_counter()
        self.validated = False

    def on_train_epoch_start(self, trainer, module):
        self.started, self.validated = time.perf_counter(), False

    def on_validation_epoch_end(self, trainer, module):
        self.validated = not trainer.sanity_checking

    def on_train_epoch_end(self, trainer, module):
        if trainer.sanity_checking:
            return
        metrics = {
            k: float(v)
            for k, v in trainer.callback_metrics.items()
            if self.validated or not k.startswith("val/")
        }
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


class ValidateLastEpoch(Callback):
    """Validation on the last epoch too when ``check_val_every_n_epoch`` would skip it, so that
    the held-out city's figures are the delivered model's."""

    def on_train_epoch_start(self, trainer, module):
        if trainer.current_epoch == trainer.max_epochs - 1:
            trainer.check_val_every_n_epoch = 1


def data_identity(
    experiment: Experiment, fold_summary: dict, fold_tiles_tsv, start_model=None
) -> dict:
    """What a run is trained on: the fold's normalisation of the experiment's recipe and the
    digest of the rows of its tile table that it reads, those of its input kind (per-tile
    windows, band statistics and roles, so any change of a training scene, its labels or the
    tiling shows, and a change of the other kind's rasters does not); and the digest of the
    model it starts from, if any."""
    kind = experiment.kind
    table = read_statistics(fold_tiles_tsv)
    rows = table[table["scene"].astype(str).map(kind_of) == kind]
    identity = {
        "normalisation": fold_summary["normalisation"].get(experiment.recipe),
        "tiles_sha256": hashlib.sha256(rows.to_csv(sep="\t", index=False).encode()).hexdigest(),
    }
    if start_model is not None:
        identity["start_sha256"] = sha256_of(start_model)
    return identity


def deterministic_setting(accelerator: str) -> bool:
    """Bit-reproducible algorithms on the CPU; seeded only on CUDA, where cross-entropy on
    4-D logits and the backward of bilinear upsampling and adaptive pooling have no
    deterministic kernel (torch raises under ``use_deterministic_algorithms(True)``)."""
    if accelerator == "auto":
        return not torch.cuda.is_available()
    return accelerator == "cpu"


def train(
    experiment: Experiment,
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
    mlruns: str | Path | None = None,
    weights_file: str | Path | None = None,
    start_model: str | Path | None = None,
) -> dict:
    """Train (or resume) one model; leave model.ckpt, metrics.csv, curves.png, samples.png.

    The delivered model is the last epoch's by default: the held-out city is scored out of
    fold, so no choice (checkpoint, schedule) is made on it and its validation figures are
    only reported; ``checkpoint: lowest_val_loss`` chooses on it all the same.

    ``tile_stacks``: the training scenes' :class:`TileSet` by (city, scene); ``mlruns``: the
    MLflow store, when the experiment logs to MLflow; ``weights_file``: the file the encoder
    starts from (the fetched ImageNet weights), the experiment left as it is written;
    ``start_model``: the model (of the experiment's ``start_from``) every weight starts from."""
    out_dir = Path(out_dir)
    summary = json.loads(Path(fold_summary_path).read_text())
    L.seed_everything(experiment.seed, workers=True, verbose=False)
    data = TrainingData(experiment, summary, fold_tiles_tsv, tile_stacks, workers)
    identity = data_identity(experiment, summary, fold_tiles_tsv, start_model)
    has_val = len(data.val_set) > 0
    if experiment.checkpoint == "lowest_val_loss" and not has_val:
        raise InputError(
            experiment.path, "checkpoint lowest_val_loss needs a held-out city to validate on"
        )
    # the resume point: one file, overwritten every epoch
    saver = ModelCheckpoint(
        dirpath=out_dir / "checkpoints",
        filename="last",
        save_top_k=1,
        enable_version_counter=False,
        save_on_train_epoch_end=True,  # also after epochs that are not validated
    )
    chooser = ModelCheckpoint(
        dirpath=out_dir / "checkpoints", filename="lowest_val_loss", monitor="val/loss"
    )
    choosing = experiment.checkpoint == "lowest_val_loss"
    accelerator = accelerator or experiment.accelerator
    trainer = _trainer(
        experiment,
        out_dir,
        [
            saver,
            *([chooser] if choosing else []),
            EpochTable(out_dir / "metrics.csv"),
            ValidateLastEpoch(),
        ],
        _loggers(experiment, out_dir, mlruns),
        has_val,
        accelerator=accelerator,
        devices=devices or experiment.devices,
        strategy=strategy or experiment.strategy,
        max_epochs=max_epochs or experiment.epochs,
    )
    resume = _resume_point(out_dir / "checkpoints" / "last.ckpt", experiment, identity)
    trainer.fit(
        start_task(experiment, identity, weights_file, start_model),
        datamodule=data,
        ckpt_path=resume,
        weights_only=True,
    )
    if not trainer.is_global_zero:
        return {}
    chosen = Path(chooser.best_model_path) if choosing else out_dir / "checkpoints" / "last.ckpt"
    _deliver(chosen, out_dir, data.val_set if has_val else data.train_set, experiment)
    held_out = float(trainer.callback_metrics.get("val/iou_1", float("nan")))
    if choosing:
        log.info("model: epoch of lowest val/loss %.4f (%s)", chooser.best_model_score, chosen)
    else:
        log.info(
            "model: the last epoch's (held-out city's val/iou_1 %.4f, reported only)", held_out
        )
    return {"model": str(chosen), "held_out_iou_1": held_out}


def start_task(
    experiment: Experiment, identity: dict, weights_file, start_model
) -> SegmentationTask:
    """The task to train: its network's weights initial, or every one from ``start_model``."""
    if start_model is None:
        return SegmentationTask(experiment, identity, weights_file=weights_file)
    task = SegmentationTask(experiment, identity, initial_weights=False)
    network = load_trained(start_model).network.state_dict()
    load_fitting(task.model, network, start_model, experiment.name)
    log.info("network weights from %s", start_model)
    return task


def launch_environment(devices, env=os.environ) -> list:
    """Lightning's cluster environment for a job's processes, as a plugin list.

    Inside a SLURM job step of fewer tasks than devices (Snakemake's SLURM executor runs each
    job as one task), Lightning would take SLURM's environment, start no process of its own
    and train on one device of the several the job holds: there it launches one process per
    device itself. A job step of one task per device (``srun --ntasks-per-node``) keeps
    SLURM's environment, whose tasks are the ranks."""
    from lightning.fabric.plugins.environments import LightningEnvironment, SLURMEnvironment

    if not isinstance(devices, int) or devices < 2 or "SLURM_NTASKS" not in env:
        return []
    if SLURMEnvironment.detect() and int(env["SLURM_NTASKS"]) < devices:
        log.info(
            "SLURM job step of %s task(s) for %d devices: Lightning launches the processes",
            env["SLURM_NTASKS"],
            devices,
        )
        return [LightningEnvironment()]
    return []


def _trainer(experiment: Experiment, out_dir: Path, callbacks, loggers, has_val: bool, **placement):
    """The Lightning trainer of an experiment; ``placement``: accelerator, devices, strategy
    and max_epochs (the experiment's unless overridden)."""
    return L.Trainer(
        default_root_dir=out_dir,
        **placement,
        plugins=launch_environment(placement["devices"]) or None,
        precision=experiment.precision,
        accumulate_grad_batches=experiment.accumulate,
        gradient_clip_val=experiment.gradient_clip,
        callbacks=callbacks,
        logger=loggers,
        deterministic=deterministic_setting(placement["accelerator"]),
        use_distributed_sampler=False,
        enable_progress_bar=sys.stderr.isatty(),
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1.0 if has_val else 0,
        check_val_every_n_epoch=experiment.validate_every,
        log_every_n_steps=1,
    )


def _resume_point(last: Path, experiment: Experiment, identity: dict) -> str | None:
    if last.exists():
        _discard_if_foreign(last, experiment, identity)
    if not last.exists():
        return None
    log.info("resuming from %s", last)
    return str(last)


def _deliver(last: Path, out_dir: Path, samples, experiment: Experiment) -> None:
    """model.ckpt (the chosen checkpoint's weights and settings), the curves and the
    validation samples."""
    state = read_tensors(last, "checkpoint")
    with atomic_path(out_dir / "model.ckpt") as tmp:
        torch.save({key: state[key] for key in DELIVERED if key in state}, tmp)
    plot_curves(out_dir / "metrics.csv", out_dir / "curves.png")
    plot_val_samples(
        load_task(out_dir / "model.ckpt"),  # a third of the resume point's size to read again
        samples,
        out_dir / "samples.png",
        experiment.logging.val_samples,
    )


def _discard_if_foreign(last: Path, experiment: Experiment, identity: dict) -> None:
    """Remove the checkpoints of a run that another experiment or other data started: a run
    resumes only with the experiment, the fold normalisation and the tile table it began with."""
    try:
        trained = read_tensors(last, "checkpoint").get("hyper_parameters", {})
    except InputError as err:
        reason = f"cannot be resumed ({err.fault})"
    else:
        if not _same_training(trained.get("experiment"), experiment):
            reason = "was trained with other settings"
        elif trained.get("data") != identity:
            reason = "was trained on other data (fold normalisation, tile table or start model)"
        else:
            return
    log.info("%s %s: starting afresh", last, reason)
    shutil.rmtree(last.parent)


def _same_training(trained: dict | None, experiment: Experiment) -> bool:
    """Whether a checkpoint's experiment trains as this one does (whatever its name, its
    file's place or how its models are used later)."""
    try:
        return Experiment.from_dict(trained).training_settings() == experiment.training_settings()
    except (TypeError, KeyError):
        return False


def _loggers(experiment: Experiment, out_dir: Path, mlruns):
    loggers = []
    if experiment.logging.tensorboard:
        from lightning.pytorch.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(out_dir, name="tensorboard"))
    if experiment.logging.mlflow:
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
        if mlruns is None:
            raise InputError("logging.mlflow", "MLflow is asked for but no store was given")
        logger = MLFlowLogger(
            experiment_name="Trainings",
            tracking_uri=f"file:{Path(mlruns).resolve()}",
            run_name=f"{experiment.name}/{out_dir.name}",
        )
        logger.log_hyperparams(_flat(experiment.to_dict()))
        logger.experiment.log_artifact(logger.run_id, experiment.path)
        loggers.append(logger)
    return loggers or False


def _flat(settings: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat

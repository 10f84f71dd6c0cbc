"""The fold as a Lightning data module: weighted, augmented training draws (of tiles or of
scene windows); whole validation tiles; both sharded across DDP ranks."""

from __future__ import annotations

import logging

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler

from builtup.config.experiment import Experiment
from builtup.core.errors import InputError
from builtup.train.augment import build_augmentation
from builtup.train.data import (
    TargetWeightedSampler,
    TileDataset,
    augmentation_seed,
    fold_tiles,
    seed_worker,
    stacks_of,
)
from builtup.train.windows import SceneWindowDataset

log = logging.getLogger(__name__)


class ShardSampler(Sampler[int]):
    """Every ``world_size``-th index from ``rank``: each sample on exactly one rank, none
    repeated to even the shares (a repeated tile would count twice in the IoU)."""

    def __init__(self, length: int, rank: int, world_size: int):
        self.indices = list(range(rank, length, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class TrainingData(L.LightningDataModule):
    """The fold's training tiles (weighted sampler, augmented) and validation tiles (whole)."""

    def __init__(
        self,
        experiment: Experiment,
        fold_summary: dict,
        fold_tiles_tsv,
        stacks: dict,
        workers: int,
    ):
        super().__init__()
        self.experiment, self.workers = experiment, workers
        recipe, sampler = experiment.recipe, experiment.sampler
        norm = fold_summary["normalisation"].get(recipe)
        if norm is None:
            raise InputError(fold_tiles_tsv, f"fold has no statistics for recipe {recipe}")
        kind = experiment.kind
        train_rows = fold_tiles(fold_tiles_tsv, "train", kind)
        if train_rows.empty:
            raise InputError(
                fold_tiles_tsv, f"no usable training tile of a {kind} (all skipped or none)"
            )
        common = (recipe, norm["mean"], norm["std"])
        drawn = {
            "augmentation": build_augmentation(experiment.augmentation),
            "min_acquisitions": sampler.min_acquisitions,
        }
        if sampler.source == "scenes":
            self.train_set = SceneWindowDataset(
                stacks_of(train_rows, stacks), sampler.window, *common, **drawn
            )
        else:
            self.train_set = TileDataset(train_rows, stacks, *common, **drawn)
        self.val_set = TileDataset(fold_tiles(fold_tiles_tsv, "val", kind), stacks, *common)

    def epoch_length(self) -> int:
        """Draws per epoch: the experiment's, or one pass over the tiles (or scenes)."""
        return self.experiment.sampler.samples_per_epoch or getattr(
            self.train_set, "epoch_length", len(self.train_set)
        )

    def _loader(self, dataset, sampler, batch_size, generator=None):
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            generator=generator,
            num_workers=self.workers,
            persistent_workers=False,
            worker_init_fn=seed_worker,
            pin_memory=self.trainer.strategy.root_device.type == "cuda",
            drop_last=False,
        )

    def train_dataloader(self):
        experiment = self.experiment
        rank, world_size = self.trainer.global_rank, self.trainer.world_size
        sampler = TargetWeightedSampler(
            self.train_set.has_target,
            experiment.sampler.with_target,
            experiment.sampler.without_target,
            self.epoch_length(),
            seed=experiment.seed,
            rank=rank,
            world_size=world_size,
            batch_size=experiment.batch_size,
        )
        log.info(
            "process %d of %d: %d of %d draws per epoch",
            rank + 1,
            world_size,
            len(sampler),
            len(sampler) * world_size,
        )
        self.train_set.rank = rank
        seed = augmentation_seed(experiment.seed, rank)
        if self.workers == 0:
            self.train_set.seed(seed)
            log.info("draws seed %d (process %d)", seed, rank + 1)
        # the workers' seeds from a generator of their own: each validation takes one from
        # torch's, so how often it runs would change the training draws
        generator = torch.Generator().manual_seed(seed)
        return self._loader(self.train_set, sampler, experiment.batch_size, generator)

    def val_dataloader(self):
        if len(self.val_set) == 0:
            return []
        sampler = ShardSampler(len(self.val_set), self.trainer.global_rank, self.trainer.world_size)
        return self._loader(self.val_set, sampler, self.experiment.batch_size)

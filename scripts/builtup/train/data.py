"""Training data: a fold's samples through recipe, normalisation and augmentation; the sampler."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, Sampler, get_worker_info

from builtup.core.bands import SCENE, STACK, STACK_POLARISATIONS, kind_of, stacked_scenes
from builtup.core.classes import IGNORE
from builtup.core.errors import InputError
from builtup.core.recipes import get_recipe, zero_invalid
from builtup.prepare.tile_stats import read_statistics
from builtup.prepare.tiles import TileSet

log = logging.getLogger(__name__)


def fold_tiles(tiles_tsv: str | Path, role: str, kind: str = SCENE) -> pd.DataFrame:
    """The fold's usable (not skipped) tiles of one role, train or val, cut from rasters of one
    kind: the scenes, or the cities' temporal stacks."""
    table = read_statistics(tiles_tsv)
    of_kind = table["scene"].astype(str).map(kind_of) == kind
    usable = (table["role"] == role) & ~table["skip"].astype(bool) & of_kind
    return table[usable].reset_index(drop=True)


def scene_stacks(images: list, masks: list) -> dict[tuple[str, str], TileSet]:
    """The tile stacks a job was given, by (city, scene) of their ``<city>/<scene>/`` folder."""
    stacks = {}
    for image_path, mask_path in zip(
        sorted(map(str, images)), sorted(map(str, masks)), strict=True
    ):
        folder = Path(image_path).parent
        if Path(mask_path).parent != folder:
            raise ValueError(f"tile stacks {image_path} and {mask_path} are not one scene's")
        stacks[(folder.parent.name, folder.name)] = TileSet(
            Path(image_path), Path(mask_path), folder / "tiles.json"
        )
    return stacks


def stacks_under(root: str | Path) -> dict[tuple[str, str], TileSet]:
    """The tile stacks of every scene in ``<root>/<city>/<scene>/`` (by-hand training)."""
    images = sorted(Path(root).glob("*/*/images.npy"))
    return scene_stacks(images, [path.with_name("masks.npy") for path in images])


def stacks_of(rows: pd.DataFrame, stacks: dict[tuple[str, str], TileSet]) -> dict:
    """The tile stacks of the scenes the rows name; InputError if one was not given."""
    scenes = set(zip(rows["city"], rows["scene"], strict=True))
    missing = sorted(scenes - set(stacks))
    if missing:
        raise InputError(
            "/".join(missing[0]), "the fold lists tiles of a scene whose stacks were not given"
        )
    return {key: stacks[key] for key in scenes}


def series_length(recipe: str, tile_sets) -> int:
    """For a series recipe, the most acquisitions of any of the stacks' tile sets (the
    length its samples are padded to); 0 for any other recipe."""
    if not get_recipe(recipe).series:
        return 0
    return max((len(stacked_scenes(t.meta()["bands"]) or ()) for t in tile_sets), default=0)


def drawn_acquisitions(image: np.ndarray, least: int, rng: np.random.Generator) -> np.ndarray:
    """The bands of a random subset of a stack tile's acquisitions: a count drawn uniformly
    from ``least`` (or all, if fewer) to all, then that many acquisitions in random order."""
    bands = len(STACK_POLARISATIONS)
    total = image.shape[0] // bands
    count = int(rng.integers(min(least, total), total + 1))
    chosen = rng.choice(total, count, replace=False)
    return image.reshape(total, bands, *image.shape[1:])[chosen].reshape(-1, *image.shape[1:])


class SampleDataset(Dataset):
    """(input, mask) pairs: recipe applied, normalised with the fold's statistics, augmented.

    Subclasses say where a sample's (image (C, H, W), mask (H, W)) comes from (:meth:`read`).
    Inputs come out channels-last, (H, W, C) float32, because augmentation works
    on that layout and channels-last is what the GPU models run fastest on:
    the model permutes the batch to (N, C, H, W) without a copy.

    Of a stack, each sample reads a random subset of at least ``min_acquisitions`` of its
    acquisitions (None: all of them); pixels where none of them has data are ignored. A
    series comes out as (H, W, ``series_length`` x C), acquisitions after the sample's
    own all 0 (left out by the fusion model), so that cities of any count share a batch.
    """

    def __init__(
        self,
        recipe: str,
        mean: list[float],
        std: list[float],
        augmentation=None,
        min_acquisitions: int | None = None,
        series_length: int = 0,
    ):
        self.recipe = get_recipe(recipe)
        self.mean = np.asarray(mean, np.float32)[:, None, None]
        self.std = np.asarray(std, np.float32)[:, None, None]
        self.augmentation = augmentation
        self.min_acquisitions = min_acquisitions if self.recipe.kind == STACK else None
        self.series_length = series_length
        self.draws = np.random.default_rng(0)
        self.rank = 0  # the DDP rank whose draws it serves (its augmentation seeds)

    def seed(self, seed: int) -> None:
        """Seed this process's random draws: augmentation and acquisition subsets."""
        if self.augmentation is not None:
            self.augmentation.set_random_seed(seed)
        self.draws = np.random.default_rng(seed)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __getitem__(self, index: int):
        image, mask = self.read(index)
        if self.recipe.kind == STACK:
            if self.min_acquisitions is not None:
                image = drawn_acquisitions(image, self.min_acquisitions, self.draws)
            mask[np.isnan(image).all(axis=0)] = IGNORE
        valid = mask != IGNORE
        x = self.recipe(image, valid)
        x -= self.mean
        x /= self.std
        zero_invalid(x, valid)
        if self.recipe.series:
            np.nan_to_num(x, copy=False, nan=0.0)
            padding = np.zeros((self.series_length - len(x), *x.shape[1:]), np.float32)
            x = np.concatenate([x, padding]).reshape(-1, *x.shape[2:])
        x = cv2.merge(list(x))  # (H, W, C), ten times faster than a numpy transpose copy
        if self.augmentation is not None:
            out = self.augmentation(image=x, mask=mask)
            x, mask = out["image"], out["mask"]
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(
            np.ascontiguousarray(mask)
        )


class TileDataset(SampleDataset):
    """The fold's pre-cut tiles; tile stacks are memory-mapped lazily, once per worker."""

    def __init__(
        self,
        rows: pd.DataFrame,
        stacks: dict[tuple[str, str], TileSet],
        recipe: str,
        mean: list[float],
        std: list[float],
        augmentation=None,
        min_acquisitions: int | None = None,
    ):
        stacks = stacks_of(rows, stacks)
        length = series_length(recipe, stacks.values())
        super().__init__(recipe, mean, std, augmentation, min_acquisitions, length)
        self.stacks = stacks
        self.keys = [
            ((c, s), int(t))
            for c, s, t in zip(rows["city"], rows["scene"], rows["tile"], strict=True)
        ]
        self.has_target = (rows["target_ratio"].to_numpy() > 0) if len(rows) else np.zeros(0, bool)
        self._stacks: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def _stack(self, scene: tuple[str, str]):
        if scene not in self._stacks:
            self._stacks[scene] = self.stacks[scene].load()
        return self._stacks[scene]

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        scene, tile = self.keys[index]
        images, masks = self._stack(scene)
        return np.asarray(images[tile]), np.array(masks[tile])


def augmentation_seed(base: int, rank: int, worker: int | None = None) -> int:
    """The seed of one augmentation stream: its own for each DDP rank and loader worker."""
    words = [base % 2**63, rank] + ([] if worker is None else [worker])
    return int(np.random.SeedSequence(words).generate_state(1)[0])


def seed_worker(worker_id: int) -> None:
    """Give each loader worker of each DDP rank its own, reproducible random draws
    (augmentation, acquisition subsets; ``torch.initial_seed()`` alone is the same on
    every rank)."""
    info = get_worker_info()
    rank = getattr(info.dataset, "rank", 0)
    seed = augmentation_seed(torch.initial_seed(), rank, worker_id)
    info.dataset.seed(seed)
    log.info("draws seed %d (process %d, loader worker %d)", seed, rank + 1, worker_id)


class TargetWeightedSampler(Sampler[int]):
    """Draw tiles with replacement, weight ``with_target`` for tiles holding built-up pixels
    and ``without_target`` for the others (the 3rd place's sampler).

    Under DDP every rank draws the same sequence (seeded by seed and epoch) and keeps
    its own interleaved share, so ranks see disjoint draws of equal length. Each rank's share
    is whole batches of ``batch_size`` (``num_samples`` rounded up): no batch of one sample
    reaches a BatchNorm. Any number of tiles or window positions can be drawn.
    """

    def __init__(
        self,
        has_target: np.ndarray,
        with_target: float,
        without_target: float,
        num_samples: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        batch_size: int = 1,
    ):
        weights = np.where(np.asarray(has_target, bool), with_target, without_target)
        if weights.sum() <= 0:
            raise ValueError("sampler weights are all zero")
        self.cumulative = np.cumsum(weights, dtype=np.float64)
        self.per_rank = math.ceil(num_samples / (world_size * batch_size)) * batch_size
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        # inverse-CDF draws: torch.multinomial refuses more than 2**24 categories
        generator = np.random.default_rng([self.seed, self.epoch])
        total = self.cumulative[-1]
        points = generator.random(self.per_rank * self.world_size) * total
        draws = np.searchsorted(self.cumulative, points, side="right")
        draws = np.minimum(draws, len(self.cumulative) - 1)
        return iter(draws[self.rank :: self.world_size].tolist())

    def __len__(self) -> int:
        return self.per_rank

"""Scene prediction: overlapping windows stitched into one map, TTA, the right fold models.

Two ways to stitch windows: ``blend`` (windows overlap and their predictions are
averaged with weights that ramp down towards the window edges) and ``crop``
(each context window keeps only its central part; the kept parts tile the scene,
and the context beyond the scene's edge is nodata, as in training). The scene is
read one row of windows at a time (the next row is read while the model runs on
the current one); predictions accumulate, weighted, in a rolling buffer a little
taller than one window, and rows are written as soon as no later window can
touch them. Memory therefore grows with the scene's width, never with its
height, and the output covers the scene exactly.

Output: a probability raster (:mod:`builtup.core.probability`).
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch
import ttach

from builtup.config.experiment import load_experiment
from builtup.core.bands import raster_kind
from builtup.core.errors import InputError
from builtup.core.probability import PROB_NODATA, PROB_SCALE, probability_raster
from builtup.core.rasters import is_nodata, open_raster, read_window
from builtup.core.recipes import get_recipe
from builtup.prepare.tiles import tile_offsets
from builtup.train.task import load_task

log = logging.getLogger(__name__)

STRIDE = 32  # the output stride of every network: input sides must be a multiple of it
TTA = {
    "none": None,
    "flips": ttach.aliases.flip_transform,
    "rot90": lambda: ttach.Compose([ttach.Rotate90(angles=[0, 90, 180, 270])]),
    # the seed's inference configs: the three rotations, the unrotated pass left out
    "rot90_without_identity": lambda: ttach.Compose([ttach.Rotate90(angles=[90, 180, 270])]),
    "d4": ttach.aliases.d4_transform,
}


def blend_weights(size: int, overlap: int) -> np.ndarray:
    """(size, size) weights: 1 inside, ramping down linearly (never to 0) over ``overlap`` px."""
    ramp = np.ones(size, dtype=np.float32)
    if overlap > 0:
        edge = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
        ramp[:overlap] = np.minimum(ramp[:overlap], edge)
        ramp[-overlap:] = np.minimum(ramp[-overlap:], edge[::-1])
    return np.outer(ramp, ramp)


@dataclass
class FoldModel:
    """A trained network with the normalisation of the fold it was trained on."""

    network: torch.nn.Module
    mean: np.ndarray
    std: np.ndarray


def load_fold_model(checkpoint: str | Path, summary: dict, spec: dict, device) -> FoldModel:
    """The model of a checkpoint, checked against the experiment and the fold normalisation
    it is meant to be used with."""
    task = load_task(checkpoint)
    trained = task.spec
    for key in ("model", "recipe"):
        if trained[key] != spec[key]:
            raise InputError(
                checkpoint,
                f"checkpoint does not match the experiment: {key} "
                f"{trained[key]} was trained, {spec[key]} is configured",
            )
    norm = summary["normalisation"][spec["recipe"]]
    trained_norm = (task.data or {}).get("normalisation")
    if trained_norm is not None and trained_norm != norm:
        raise InputError(
            checkpoint,
            "was trained with another normalisation than its fold's summary: retrain it",
        )
    network = task.model.to(device).eval()
    return FoldModel(
        network,
        np.asarray(norm["mean"], np.float32)[:, None, None],
        np.asarray(norm["std"], np.float32)[:, None, None],
    )


def pad_to_stride(batch: torch.Tensor, stride: int = STRIDE) -> torch.Tensor:
    """The batch padded at the bottom and right with nodata (0 after normalisation, as in
    training) to sides divisible by ``stride``; the caller crops the output back."""
    height, width = batch.shape[-2:]
    pad_h, pad_w = -height % stride, -width % stride
    if pad_h == 0 and pad_w == 0:
        return batch
    return torch.nn.functional.pad(batch, (0, pad_w, 0, pad_h))


class ScenePredictor:
    """Logits averaged over TTA passes and fold models; probability of the built-up class.

    ``stitch="blend"``: windows of ``window`` px overlapping by at least ``overlap`` px,
    blended. ``stitch="crop"``: context windows of ``window`` px of which the central
    ``kept`` px are kept.
    """

    def __init__(
        self,
        models: list[FoldModel],
        recipe: str,
        tta: str = "none",
        window: int = 512,
        overlap: int = 128,
        batch_size: int = 8,
        device="cpu",
        stitch: str = "blend",
        kept: int | None = None,
    ):
        self.models, self.recipe = models, get_recipe(recipe)
        self.overlap, self.batch_size = overlap, batch_size
        self.device = torch.device(device)
        self.autocast = self.device.type == "cuda"
        transforms = TTA[tta]
        self.networks = [
            m.network
            if transforms is None
            else ttach.SegmentationTTAWrapper(m.network, transforms(), merge_mode="mean")
            for m in models
        ]
        if stitch == "crop":
            if kept is None or not 0 < kept <= window or (window - kept) % 2:
                raise ValueError(
                    f"crop stitching keeps the centre of each window: kept ({kept}) must be "
                    f"at most the window ({window}) and differ from it by an even number"
                )
            self.kept, self.margin, self.overlap = kept, (window - kept) // 2, 0
            self.weights = np.ones((kept, kept), np.float32)
        elif stitch == "blend":
            self.kept, self.margin = window, 0
            self.weights = blend_weights(window, overlap)
        else:
            raise ValueError(f"stitch must be 'blend' or 'crop', not {stitch!r}")

    @torch.no_grad()
    def probabilities(self, patches: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """(N, H, W) built-up probability of (N, bands, H, W) patches of the recipe's kind."""
        features = np.stack([self.recipe(p, v) for p, v in zip(patches, valid, strict=True)])
        nodata = ~np.broadcast_to(valid[:, None], features.shape)
        height, width = features.shape[-2:]
        logits = 0.0
        for model, network in zip(self.models, self.networks, strict=True):
            inputs = (features - model.mean) / model.std
            inputs[nodata] = 0.0
            batch = pad_to_stride(torch.from_numpy(inputs).to(self.device, non_blocking=True))
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                logits = logits + network(batch)[..., :height, :width].float()
        logits = logits / len(self.models)
        return torch.softmax(logits, dim=1)[:, 1].cpu().numpy()

    def predict_scene(self, scene_path: str | Path, out_path: str | Path) -> dict:
        with open_raster(scene_path) as src:
            kind = raster_kind(src.descriptions)
            if kind != self.recipe.kind:
                raise InputError(
                    scene_path,
                    f"is a {kind} raster, and recipe {self.recipe.name} reads a {self.recipe.kind}",
                )
            height, width = src.height, src.width
            size_y, size_x = min(self.kept, height), min(self.kept, width)
            rows = tile_offsets(height, size_y, min(self.overlap, size_y - 1))
            cols = tile_offsets(width, size_x, min(self.overlap, size_x - 1))
            buffer = _RollingBuffer(size_y + max(np.diff(rows), default=0), width)
            with probability_raster(src.profile, out_path) as dst, ThreadPoolExecutor(1) as reader:

                def read(row):
                    return self._read_context(src, scene_path, row, size_y)

                pending = reader.submit(read, rows[0])
                for k, row in enumerate(rows):
                    strip = pending.result()
                    if k + 1 < len(rows):
                        pending = reader.submit(read, rows[k + 1])
                    valid = ~np.all(is_nodata(strip, src.nodata), axis=0)
                    self._predict_strip(strip, valid, row, cols, (size_y, size_x), buffer)
                    top, values = buffer.flush(rows[k + 1] if k + 1 < len(rows) else height)
                    if len(values):
                        dst.write(
                            values[None],
                            window=rasterio.windows.Window(0, top, width, values.shape[0]),
                        )
        log.info("%s: %d x %d px, %d windows", out_path, width, height, len(rows) * len(cols))
        return {"width": width, "height": height, "windows": len(rows) * len(cols)}

    def _read_context(self, src, path, row: int, rows: int) -> np.ndarray:
        """Rows [row, row + rows) of the scene with ``margin`` px of context on every side;
        context beyond the scene's edges is nodata."""
        m = self.margin
        if m == 0:
            return read_window(src, path, rasterio.windows.Window(0, row, src.width, rows))
        fill = np.nan if src.nodata is None else src.nodata
        strip = np.full((src.count, rows + 2 * m, src.width + 2 * m), fill, src.dtypes[0])
        top, bottom = max(row - m, 0), min(row + rows + m, src.height)
        strip[:, top - (row - m) : bottom - (row - m), m : m + src.width] = read_window(
            src, path, rasterio.windows.Window(0, top, src.width, bottom - top)
        )
        return strip

    def _predict_strip(self, strip, valid_strip, row, cols, kept, buffer) -> None:
        """Predict the windows of a strip; keep the central ``kept`` (rows, cols) of each."""
        m, (size_y, size_x) = self.margin, kept
        weights = self.weights[:size_y, :size_x]
        for start in range(0, len(cols), self.batch_size):
            chunk = cols[start : start + self.batch_size]
            patches = np.stack([strip[:, :, c : c + size_x + 2 * m] for c in chunk])
            valid = np.stack([valid_strip[:, c : c + size_x + 2 * m] for c in chunk])
            probs = self.probabilities(patches, valid)
            centre = np.s_[m : m + size_y, m : m + size_x]
            for col, prob, ok in zip(chunk, probs, valid, strict=True):
                buffer.add(row, col, prob[centre], weights, ok[centre])


class _RollingBuffer:
    """Weighted sums of predictions for the rows not yet written."""

    def __init__(self, rows: int, width: int):
        self.total = np.zeros((rows, width), np.float32)
        self.weight = np.zeros((rows, width), np.float32)
        self.valid = np.zeros((rows, width), bool)
        self.top = 0

    def add(self, row, col, prob, weights, valid) -> None:
        r = row - self.top
        h, w = prob.shape
        self.total[r : r + h, col : col + w] += weights * prob
        self.weight[r : r + h, col : col + w] += weights
        self.valid[r : r + h, col : col + w] |= valid

    def flush(self, until: int) -> tuple[int, np.ndarray]:
        """(top row, uint8 probabilities) of every row above ``until``, dropped from the buffer."""
        top, n = self.top, max(until - self.top, 0)
        prob = self.total[:n] / np.maximum(self.weight[:n], 1e-12)
        out = np.where(self.valid[:n], np.rint(prob * PROB_SCALE), PROB_NODATA).astype(np.uint8)
        for array in (self.total, self.weight, self.valid):
            array[: len(array) - n] = array[n:].copy()
            array[len(array) - n :] = 0
        self.top += n
        return top, out


def resolve_device(device: str) -> str:
    """``auto``: the first CUDA device when there is one, else the CPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def predict_with_folds(
    raster,
    experiment_path,
    checkpoints,
    summaries,
    out_path,
    *,
    window=512,
    overlap=128,
    batch_size=8,
    device="auto",
) -> dict:
    """Predict one scene with the given fold models (their logits averaged), stitched as the
    experiment's ``prediction`` section says (``window`` and ``overlap``: the workflow's
    defaults, for an experiment that does not set them)."""
    spec = load_experiment(experiment_path)
    stitching = spec["prediction"]
    device = resolve_device(device)
    models = [
        load_fold_model(ckpt, json.loads(Path(summary).read_text()), spec, device)
        for ckpt, summary in zip(checkpoints, summaries, strict=True)
    ]
    predictor = ScenePredictor(
        models,
        spec["recipe"],
        spec["tta"],
        stitching["window"] or window,
        stitching["overlap"] if stitching["overlap"] is not None else overlap,
        batch_size,
        device,
        stitch=stitching["stitch"],
        kept=stitching["kept"],
    )
    return predictor.predict_scene(raster, out_path)

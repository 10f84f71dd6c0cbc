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

import dataclasses
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch
import ttach

from builtup.config.experiment import Experiment, PredictionSettings
from builtup.core.bands import raster_kind
from builtup.core.errors import InputError
from builtup.core.probability import (
    LOGIT_LIMIT,
    PROBABILITY,
    Encoding,
    probability_raster,
)
from builtup.core.rasters import is_nodata, open_raster, read_window
from builtup.core.recipes import get_recipe
from builtup.prepare.tiles import tile_offsets
from builtup.train.checkpoint import load_trained

log = logging.getLogger(__name__)

STRIDE = 32  # the output stride of every network: input sides must be a multiple of it
TTA = {
    "none": None,
    "flips": ttach.aliases.flip_transform,
    "rot90": lambda: ttach.Compose([ttach.Rotate90(angles=[0, 90, 180, 270])]),
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


def load_fold_model(
    checkpoint: str | Path, summary: dict, experiment: Experiment, device
) -> FoldModel:
    """The model of a checkpoint, checked against the experiment and the fold normalisation
    it is meant to be used with."""
    fold = load_trained(checkpoint)
    for key in ("model", "recipe"):
        trained, configured = getattr(fold.experiment, key), getattr(experiment, key)
        if trained != configured:
            raise InputError(
                checkpoint,
                f"checkpoint does not match the experiment: {key} "
                f"{_plain(trained)} was trained, {_plain(configured)} is configured",
            )
    norm = summary["normalisation"][experiment.recipe]
    trained_norm = (fold.data or {}).get("normalisation")
    if trained_norm is not None and trained_norm != norm:
        raise InputError(
            checkpoint,
            "was trained with another normalisation than its fold's summary: retrain it",
        )
    network = fold.network.to(device).eval()
    return FoldModel(
        network,
        np.asarray(norm["mean"], np.float32)[:, None, None],
        np.asarray(norm["std"], np.float32)[:, None, None],
    )


def _plain(value):
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


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

    ``prediction.stitch`` blend: windows of ``window`` px overlapping by at least
    ``overlap`` px, blended; crop: context windows of ``window`` px of which the central
    ``kept`` px are kept.

    The CPU reads a strip of windows (GDAL) and applies the recipe to it on a reader
    thread; the strip goes to the device once, where normalisation per fold model, window
    extraction, TTA, blending and the uint8 encoding run as tensor operations; finished
    rows are written on a writer thread. Reading the next strip and writing the last rows
    overlap with the device's work.
    """

    def __init__(
        self,
        models: list[FoldModel],
        recipe: str,
        tta: str,
        prediction: PredictionSettings,
        device: str,
        encoding: Encoding,
    ):
        self.recipe = get_recipe(recipe)
        self.encoding = encoding
        stitch, window, kept = prediction.stitch, prediction.window, prediction.kept
        self.overlap, self.batch_size = prediction.overlap, prediction.batch_size
        self.device = torch.device(device)
        self.autocast = autocast_dtype(self.device, prediction.precision)
        self.networks = [m.network for m in models]
        # (x - mean) / std as one fused x * scale + shift per fold model
        self.norms = [
            (
                torch.as_tensor(1 / m.std, device=self.device),
                torch.as_tensor(-m.mean / m.std, device=self.device),
            )
            for m in models
        ]
        self.transforms = list(TTA[tta]()) if TTA[tta] is not None else []
        if stitch == "crop":
            if kept is None or not 0 < kept <= window or (window - kept) % 2:
                raise ValueError(
                    f"crop stitching keeps the centre of each window: kept ({kept}) must be "
                    f"at most the window ({window}) and differ from it by an even number"
                )
            self.kept, self.margin, self.overlap = kept, (window - kept) // 2, 0
            weights = np.ones((kept, kept), np.float32)
        elif stitch == "blend":
            self.kept, self.margin = window, 0
            weights = blend_weights(window, self.overlap)
        else:
            raise ValueError(f"stitch must be 'blend' or 'crop', not {stitch!r}")
        self.weights = torch.from_numpy(weights).to(self.device)
        self._logits: torch.Tensor | None = None

    @torch.no_grad()
    def logits(self, network, batch: torch.Tensor) -> torch.Tensor:
        """(N, 2, H, W) float32 logits of a normalised batch, summed over the TTA passes."""
        height, width = batch.shape[-2:]
        padded = pad_to_stride(batch)
        if not self.transforms:
            return self._forward(network, padded)[..., :height, :width]
        total = None
        for transform in self.transforms:
            # contiguous: convolutions on a rotated (transposed) view take a slow path
            output = self._forward(network, transform.augment_image(padded).contiguous())
            output = transform.deaugment_mask(output)
            total = output.contiguous() if total is None else total.add_(output)
        return total[..., :height, :width]

    def _forward(self, network, batch: torch.Tensor) -> torch.Tensor:
        with torch.autocast(
            self.device.type, dtype=self.autocast, enabled=self.autocast is not None
        ):
            return network(batch).float()

    @torch.no_grad()
    def built_up_logits(self, features: torch.Tensor, valid: torch.Tensor, cols, size_x):
        """(N, H, W) built-up logit of the windows at ``cols`` of a strip of recipe
        features (C, H, W), or (A, C, H, W) of a series, and its valid mask (H, W), on the
        device: each fold model's
        normalisation applied to the strip once, its windows run in batches."""
        width = size_x + 2 * self.margin
        logits = self._logits_buffer((len(cols), 2, features.shape[-2], width))
        for index, (network, (scale, shift)) in enumerate(
            zip(self.networks, self.norms, strict=True)
        ):
            inputs = torch.addcmul(shift, features, scale).masked_fill_(~valid, 0.0)
            if self.recipe.series:  # an acquisition's pixels without data: 0, as in training
                inputs = inputs.nan_to_num_(0.0).flatten(0, 1)
            for k in range(0, len(cols), self.batch_size):
                windows = [inputs[..., c : c + width] for c in cols[k : k + self.batch_size]]
                out = self.logits(network, torch.stack(windows))
                if index == 0:
                    logits[k : k + len(windows)] = out
                else:
                    logits[k : k + len(windows)] += out
        # the mean over models and TTA passes; softmax of 2 classes: the built-up probability
        # is the sigmoid of their difference, its logit the difference
        passes = len(self.networks) * max(len(self.transforms), 1)
        return (logits[:, 1] - logits[:, 0]) / passes

    def _logits_buffer(self, shape: tuple[int, ...]) -> torch.Tensor:
        """The strip's window logits, one buffer reused strip after strip (a fresh one per
        strip costs its allocation and page faults every time)."""
        if self._logits is None or self._logits.shape != shape:
            self._logits = torch.empty(shape, dtype=torch.float32, device=self.device)
        return self._logits

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
            rows_held = size_y + max(np.diff(rows), default=0)
            buffer = _RollingBuffer(rows_held, width, self.device, self.encoding)
            with (
                probability_raster(src.profile, out_path, self.encoding) as dst,
                ThreadPoolExecutor(1) as reader,
                ThreadPoolExecutor(1) as writer,
            ):
                strips = _StripReader(src, scene_path, self.recipe, self.margin)

                def read(row):
                    return tuple(map(self._to_device, strips.strip(row, size_y)))

                def write(top, values):
                    window = rasterio.windows.Window(0, top, width, values.shape[0])
                    dst.write(values[None], window=window)

                pending, written = reader.submit(read, rows[0]), []
                for k, row in enumerate(rows):
                    features, valid = pending.result()
                    if k + 1 < len(rows):
                        pending = reader.submit(read, rows[k + 1])
                    self._predict_strip(features, valid, row, cols, (size_y, size_x), buffer)
                    top, values = buffer.flush(rows[k + 1] if k + 1 < len(rows) else height)
                    if len(values):
                        written.append(writer.submit(write, top, values))
                for job in written:
                    job.result()
        log.info("%s: %d x %d px, %d windows", out_path, width, height, len(rows) * len(cols))
        return {"width": width, "height": height, "windows": len(rows) * len(cols)}

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        """A strip on the device; to CUDA from pinned memory, so that the copy overlaps."""
        tensor = torch.from_numpy(array)
        if self.device.type != "cuda":
            return tensor
        return tensor.pin_memory().to(self.device, non_blocking=True)

    def _predict_strip(self, features, valid, row, cols, kept, buffer) -> None:
        """Predict the windows of a strip; keep the central ``kept`` (rows, cols) of each."""
        m, (size_y, size_x) = self.margin, kept
        weights = self.weights[:size_y, :size_x]
        if self.recipe.per_pixel:
            logits = self.built_up_logits(features, valid, cols, size_x)
        else:  # a recipe of per-window statistics: applied window by window
            logits = torch.cat([self._per_window(features, valid, c, size_x) for c in cols])
        centre = np.s_[m : m + size_y, m : m + size_x]
        for col, logit in zip(cols, logits, strict=True):
            ok = valid[m : m + size_y, col + m : col + m + size_x]
            buffer.add(row, col, logit[centre], weights, ok)

    def _per_window(self, strip, valid, col, size_x) -> torch.Tensor:
        width = size_x + 2 * self.margin
        patch = strip[:, :, col : col + width].cpu().numpy()
        ok = valid[:, col : col + width].cpu().numpy()
        features = torch.from_numpy(self.recipe(patch, ok)).to(self.device)
        return self.built_up_logits(features, valid[:, col : col + width], [0], size_x)


class _StripReader:
    """Strips of a scene with ``margin`` px of context on every side (nodata beyond the
    scene's edges): the recipe's features (C, H, W) and the valid mask (H, W), numpy. Rows a
    strip shares with the previous one are taken from it, not decoded and computed again."""

    def __init__(self, src, path, recipe, margin: int):
        self.src, self.path, self.recipe, self.margin = src, path, recipe, margin
        self.last: tuple[int, np.ndarray, np.ndarray] | None = None

    def strip(self, row: int, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """The strip of scene rows [row, row + rows) and its context."""
        top, count = row - self.margin, rows + 2 * self.margin
        shared = 0
        if self.last is not None and self.last[0] <= top:
            last_top, last_features, _ = self.last
            shared = max(0, min(last_top + last_features.shape[-2] - top, count))
        features, valid = self._fresh(top + shared, count - shared)
        if shared:
            last_top, last_features, last_valid = self.last
            kept = slice(top - last_top, top - last_top + shared)
            features = np.concatenate([last_features[..., kept, :], features], axis=-2)
            valid = np.concatenate([last_valid[kept], valid], axis=0)
        self.last = (top, features, valid)
        return features, valid

    def _fresh(self, top: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        src, m = self.src, self.margin
        first, end = max(top, 0), min(top + count, src.height)
        window = rasterio.windows.Window(0, first, src.width, max(end - first, 0))
        if m == 0 and (first, end) == (top, top + count):
            strip = read_window(src, self.path, window)
        else:
            fill = np.nan if src.nodata is None else src.nodata
            strip = np.full((src.count, count, src.width + 2 * m), fill, src.dtypes[0])
            if end > first:
                strip[:, first - top : end - top, m : m + src.width] = read_window(
                    src, self.path, window
                )
        valid = ~np.all(is_nodata(strip, src.nodata), axis=0)
        return (self.recipe(strip, valid) if self.recipe.per_pixel else strip), valid


class _RollingBuffer:
    """Weighted sums of predictions for the rows not yet written, on the device: of the
    probabilities, or of the logits for a logit raster (blended in the domain it stores)."""

    def __init__(self, rows: int, width: int, device, encoding: Encoding):
        self.total = torch.zeros((rows, width), dtype=torch.float32, device=device)
        self.weight = torch.zeros((rows, width), dtype=torch.float32, device=device)
        self.valid = torch.zeros((rows, width), dtype=torch.bool, device=device)
        self.encoding, self.top = encoding, 0

    def add(self, row, col, logit, weights, valid) -> None:
        r = row - self.top
        h, w = logit.shape
        value = torch.sigmoid(logit) if self.encoding is PROBABILITY else logit
        self.total[r : r + h, col : col + w] += weights * value
        self.weight[r : r + h, col : col + w] += weights
        self.valid[r : r + h, col : col + w] |= valid

    def flush(self, until: int) -> tuple[int, np.ndarray]:
        """(top row, encoded values) of every row above ``until``, dropped from the buffer."""
        top, n = self.top, max(until - self.top, 0)
        value = self.total[:n] / self.weight[:n].clamp_min(1e-12)
        out = self._encoded(value, self.valid[:n])
        for array in (self.total, self.weight, self.valid):
            array[: len(array) - n] = array[n:].clone()
            array[len(array) - n :] = 0
        self.top += n
        return top, out

    def _encoded(self, value: torch.Tensor, valid: torch.Tensor) -> np.ndarray:
        encoding = self.encoding
        stored = torch.round(value * encoding.steps)
        if encoding is not PROBABILITY:
            stored = stored.clamp(-LOGIT_LIMIT, LOGIT_LIMIT)
        stored = torch.where(valid, stored, encoding.nodata)
        return stored.to(getattr(torch, encoding.dtype)).cpu().numpy()


def resolve_device(device: str, accelerator: str = "auto") -> str:
    """``auto``: the first CUDA device when there is one, else the CPU; always the CPU for
    an experiment pinned to it (its jobs claim no GPU)."""
    if accelerator == "cpu":
        return "cpu"
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The dtype prediction autocasts to: none on the CPU; on CUDA the experiment's
    ``prediction.precision``, where ``auto`` is bf16 on GPUs that support it (Ampere and
    later) and fp16 on the others (V100, T4), which emulate bf16 slowly."""
    if device.type != "cuda":
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return AUTOCAST_DTYPES[precision]


def predict_scene(
    raster,
    experiment: Experiment,
    prediction: PredictionSettings,
    checkpoints,
    summaries,
    out_path,
    encoding: Encoding,
) -> dict:
    """Predict one scene with the experiment's fold models (their logits averaged), as
    ``prediction`` says (the experiment's settings with the workflow's merged in), stored in
    ``encoding`` (:mod:`builtup.core.probability`)."""
    device = resolve_device(prediction.device, experiment.accelerator)
    models = [
        load_fold_model(ckpt, json.loads(Path(summary).read_text()), experiment, device)
        for ckpt, summary in zip(checkpoints, summaries, strict=True)
    ]
    log.info("%d fold model(s): %s", len(models), ", ".join(map(str, checkpoints)))
    predictor = ScenePredictor(
        models, experiment.recipe, experiment.tta, prediction, device, encoding
    )
    return predictor.predict_scene(raster, out_path)

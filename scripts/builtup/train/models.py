"""Segmentation models: LW-RefineNet on timm features, and every smp architecture by name.

Encoder weights: ``null`` (random initialisation, the default), ``imagenet``
(downloaded by timm/smp, needs the network; the workflow fetches them once into a
local file instead, :mod:`builtup.train.weights`) or the path of a local weights
file (a state dict of the encoder, or a checkpoint holding ``state_dict``; checked
against its ``.sha256`` when there is one; a first convolution made for another
number of input channels is adapted, as timm and smp do for ImageNet weights).
"""

from __future__ import annotations

import inspect
from pathlib import Path

import segmentation_models_pytorch as smp
import timm
import torch
import torch.nn.functional as F
from timm.models import adapt_input_conv
from torch import nn

from builtup.config.encoders import LWREFINENET
from builtup.config.experiment import ModelSettings
from builtup.train.tensorfile import load_fitting, read_tensors, state_dict_in


class ChainedResidualPooling(nn.Module):
    """Four stages of 5x5 max-pool + 1x1 conv, each added to the running sum (LW-RefineNet)."""

    def __init__(self, channels: int, stages: int = 4):
        super().__init__()
        self.pool = nn.MaxPool2d(5, stride=1, padding=2)
        self.convs = nn.ModuleList(
            nn.Conv2d(channels, channels, 1, bias=False) for _ in range(stages)
        )

    def forward(self, x):
        top = x
        for conv in self.convs:
            top = conv(self.pooled(top))
            x = x + top
        return x

    def pooled(self, x):
        if x.device.type != "cpu" or x.is_contiguous(memory_format=torch.channels_last):
            return self.pool(x)
        # PyTorch's CPU max-pool is 5-14 times faster on channels-last memory (same values)
        return self.pool(x.contiguous(memory_format=torch.channels_last)).contiguous()


class LWRefineNet(nn.Module):
    """Light-Weight RefineNet (Nekrasov et al., BMVC 2018) on a timm encoder's 4 deepest levels.

    Each level is projected to ``width`` channels, summed with the upsampled
    coarser level, refined by chained residual pooling; the head works at
    ``head_stride`` 4 (the original) or 2 (the encoder's stride-2 level added, for
    structures of one or two pixels such as streets) and its logits are upsampled to
    the input size.
    """

    def __init__(
        self,
        encoder: str = "mobilenetv2_100",
        in_channels: int = 3,
        classes: int = 2,
        width: int = 256,
        pretrained: bool = False,
        head_stride: int = 4,
    ):
        super().__init__()
        if head_stride not in (2, 4):
            raise ValueError(f"LW-RefineNet head_stride must be 2 or 4, not {head_stride}")
        levels = (0, 1, 2, 3, 4) if head_stride == 2 else (1, 2, 3, 4)
        self.encoder = self.timm_encoder(encoder, in_channels, pretrained, levels)
        channels = self.encoder.feature_info.channels()
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1, bias=False) for c in channels)
        self.refine = nn.ModuleList(ChainedResidualPooling(width) for _ in channels)
        self.project = nn.ModuleList(nn.Conv2d(width, width, 1, bias=False) for _ in channels[1:])
        self.head = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, classes, 1),
        )

    @staticmethod
    def timm_encoder(
        name: str, in_channels: int = 3, pretrained: bool = False, levels=(1, 2, 3, 4)
    ) -> nn.Module:
        """The timm feature extractor of the given levels (1 to 4: strides 4 to 32); the
        weights do not depend on the levels."""
        return timm.create_model(
            name,
            features_only=True,
            out_indices=levels,
            in_chans=in_channels,
            pretrained=pretrained,
        )

    @classmethod
    def pretrained_encoder(cls, name: str) -> nn.Module:
        return cls.timm_encoder(name, pretrained=True)

    def forward(self, x):
        return self.decode(self.encoder(x), x.shape[-2:])

    def decode(self, features: list, size) -> torch.Tensor:
        """Logits at ``size`` from the encoder's features."""
        y = None
        for level in reversed(range(len(features))):
            f = self.lateral[level](features[level])
            if y is not None:
                f = f + F.interpolate(y, size=f.shape[-2:], mode="bilinear", align_corners=False)
            y = self.refine[level](F.relu(f))
            if level > 0:
                y = self.project[level - 1](y)
        return F.interpolate(self.head(y), size=size, mode="bilinear", align_corners=False)


def decode(model: nn.Module, features: list, size) -> torch.Tensor:
    """Logits of a segmentation model (LW-RefineNet or smp) from its encoder's features."""
    if isinstance(model, LWRefineNet):
        return model.decode(features, size)
    return model.segmentation_head(model.decoder(features))


def encoder_channels(model: nn.Module) -> list[int]:
    if isinstance(model, LWRefineNet):
        return model.encoder.feature_info.channels()
    return list(model.encoder.out_channels)


class AcquisitionFusion(nn.Module):
    """One segmentation model on any number of acquisitions of a city: its encoder runs on
    each acquisition, every level's features are pooled across acquisitions by their mean
    and their max (order-free, any count), a 1x1 convolution per level maps both back to
    the level's width, and the model's decoder runs once on the pooled features.

    Input (N, A x C, H, W): A acquisitions of ``channels`` channels each; an acquisition
    that is 0 everywhere in a sample (padding, or no data in that window) is left out of
    that sample's pooling and never reaches the encoder, whose batch statistics would
    otherwise count blank images. Acquisitions are encoded one at a time, so memory holds
    one acquisition's features and the pooled sums, whatever A.
    """

    def __init__(self, model: nn.Module, channels: int):
        super().__init__()
        self.model, self.channels = model, channels
        self.fuse = nn.ModuleList(
            nn.Conv2d(2 * c, c, 1) if c else nn.Identity() for c in encoder_channels(model)
        )

    def forward(self, x):
        series = x.unflatten(1, (-1, self.channels))  # (N, A, C, H, W)
        present = series.flatten(2).abs().amax(dim=2) > 0  # (N, A)
        total = peak = None
        for a in range(series.shape[1]):
            keep = present[:, a]
            if not keep.any():
                continue
            features = [self._to_batch(f, keep) for f in self.model.encoder(series[keep, a])]
            keep = keep.view(-1, 1, 1, 1)
            if total is None:
                total = features
                peak = [torch.where(keep, f, -torch.inf) for f in features]
                continue
            total = [t + f for t, f in zip(total, features, strict=True)]
            peak = [
                torch.maximum(p, torch.where(keep, f, -torch.inf))
                for p, f in zip(peak, features, strict=True)
            ]
        if total is None:  # no sample holds any acquisition
            features = self.model.encoder(series[:, 0])
            total, peak = [f * 0 for f in features], [f * 0 for f in features]
        count = present.sum(dim=1).clamp_min(1).view(-1, 1, 1, 1).to(x.dtype)
        pooled = [
            fuse(torch.cat([t / count, torch.where(p.isinf(), 0, p)], dim=1)) if t.shape[1] else t
            for fuse, t, p in zip(self.fuse, total, peak, strict=True)
        ]
        return decode(self.model, pooled, x.shape[-2:])

    @staticmethod
    def _to_batch(features: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
        """Features of the kept samples placed at their rows of the whole batch (0 elsewhere)."""
        if bool(kept.all()):
            return features
        batch = features.new_zeros((kept.shape[0], *features.shape[1:]))
        return batch.index_put((kept.nonzero().squeeze(1),), features)


def build_model(
    model_settings: ModelSettings,
    in_channels: int,
    weights_file: str | Path | None,
    fused: bool = False,
) -> nn.Module:
    """The model of an experiment's ``model`` section for ``in_channels`` input channels (of
    each acquisition, ``fused``: :class:`AcquisitionFusion` of the model).

    ``weights_file``: the file the encoder starts from, whatever ``encoder_weights`` names
    (the training job's copy of the ImageNet weights); without it, ``imagenet`` downloads
    through the library and a path is read as it stands."""
    arch, encoder = model_settings.architecture, model_settings.encoder
    weights, classes = model_settings.encoder_weights, model_settings.classes
    options = model_settings.options
    if weights and weights_file is not None:
        weights = str(weights_file)
    imagenet = weights == "imagenet"
    try:
        if arch.lower() == LWREFINENET:
            model = LWRefineNet(encoder, in_channels, classes, pretrained=imagenet, **options)
        else:
            model = smp.create_model(
                arch,
                encoder_name=encoder,
                in_channels=in_channels,
                classes=classes,
                encoder_weights="imagenet" if imagenet else None,
                **options,
            )
    except (KeyError, RuntimeError) as err:
        raise ValueError(f"cannot build {arch} with encoder {encoder!r}: {err}") from None
    if weights and not imagenet:
        load_encoder_weights(model.encoder, weights)
    return AcquisitionFusion(model, in_channels) if fused else model


def check_model_names(model_settings: ModelSettings) -> None:
    """Fail early, without building anything, on an unknown architecture, encoder or option."""
    arch, encoder = model_settings.architecture, model_settings.encoder
    if arch.lower() == LWREFINENET:
        if not timm.is_model(encoder):
            raise ValueError(f"unknown timm encoder {encoder!r} for LW-RefineNet")
    else:
        known = {cls.__name__.lower(): cls.__name__ for cls in smp_classes()}
        if arch.lower() not in known:
            raise ValueError(
                f"unknown architecture {arch!r}; known: lwrefinenet, {', '.join(known.values())}"
            )
        if encoder.startswith("tu-"):
            if not timm.is_model(encoder.removeprefix("tu-")):
                raise ValueError(f"unknown encoder {encoder!r}: timm has no {encoder[3:]!r}")
        elif encoder not in smp.encoders.get_encoder_names():
            raise ValueError(f"unknown encoder {encoder!r} (smp encoders, or tu-<timm name>)")
    check_model_options(model_settings)


# Arguments of the model classes that the experiment's other keys set
SET_BY_THE_EXPERIMENT = {"encoder", "encoder_name", "encoder_weights", "pretrained"}
SET_BY_THE_EXPERIMENT |= {"in_channels", "classes"}


def check_model_options(model_settings: ModelSettings) -> None:
    """``model.options`` are named arguments of the model class (smp passes unknown ones on
    to the encoder, which silently ignores a misspelt one)."""
    cls = model_class(model_settings.architecture)
    parameters = inspect.signature(cls.__init__).parameters.values()
    allowed = [
        p.name
        for p in parameters
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.name not in SET_BY_THE_EXPERIMENT | {"self"}
    ]
    unknown = sorted(set(model_settings.options) - set(allowed))
    if unknown:
        raise ValueError(
            f"model.options: {cls.__name__} has no option {', '.join(unknown)} "
            f"(its options: {', '.join(allowed)})"
        )


def model_class(architecture: str) -> type[nn.Module]:
    if architecture.lower() == LWREFINENET:
        return LWRefineNet
    return {cls.__name__.lower(): cls for cls in smp_classes()}[architecture.lower()]


def smp_classes() -> list[type[nn.Module]]:
    return [
        cls
        for cls in smp.__dict__.values()
        if isinstance(cls, type)
        and issubclass(cls, smp.base.SegmentationModel)
        and cls is not smp.base.SegmentationModel
    ]


def adapted_input_convs(state: dict, target: dict) -> dict:
    """``state`` with each convolution that differs from ``target`` only in its input channels
    (the first one, for inputs other than RGB) adapted as timm does for pretrained weights."""
    adapted = dict(state)
    for key, weight in state.items():
        wanted = target.get(key)
        if (
            wanted is not None
            and weight.ndim == 4
            and wanted.ndim == 4
            and weight.shape[1] != wanted.shape[1]
            and weight.shape[0] == wanted.shape[0]
            and weight.shape[2:] == wanted.shape[2:]
        ):
            adapted[key] = adapt_input_conv(wanted.shape[1], weight, base_chans=weight.shape[1])
    return adapted


def load_encoder_weights(encoder: nn.Module, path: str | Path) -> None:
    data = read_tensors(path, "encoder weights file")
    state = adapted_input_convs(state_dict_in(data, path), encoder.state_dict())
    load_fitting(encoder, state, path, "the encoder")

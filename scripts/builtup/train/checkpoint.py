"""Checkpoints of this workflow read back without Lightning: the experiment and data they
were trained with, and the trained network (what prediction needs, imported in a second
less than the training stack)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from builtup.config.experiment import Experiment
from builtup.core.errors import InputError
from builtup.train.models import build_model
from builtup.train.names import check_names
from builtup.train.tensorfile import load_fitting, read_tensors, state_dict_in

NETWORK = "model."  # the network's weights in the task's state dict


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint holds: the experiment it was trained with, the identity of its data
    (:func:`builtup.train.loop.data_identity`) and the task's weights."""

    experiment: Experiment
    data: dict | None
    state_dict: dict


@dataclass(frozen=True)
class Trained:
    experiment: Experiment
    data: dict | None
    network: nn.Module


def read_checkpoint(path: str | Path) -> Checkpoint:
    """A checkpoint of this workflow, read as plain data and tensors; InputError naming the
    file for anything else."""
    state = read_tensors(path, "checkpoint")
    settings = state.get("hyper_parameters")
    if isinstance(settings, dict) and "spec" in settings:
        raise InputError(path, "was trained by builtup 0.1 (settings under 'spec'): retrain it")
    if not isinstance(settings, dict) or not isinstance(settings.get("experiment"), dict):
        raise InputError(path, "not a checkpoint of this workflow (no experiment settings)")
    experiment = experiment_of_checkpoint(settings["experiment"], path)
    return Checkpoint(experiment, settings.get("data"), state_dict_in(state, path))


def experiment_of_checkpoint(settings: dict, path) -> Experiment:
    """The experiment a checkpoint was trained with, if this version can build its network."""
    try:
        experiment = Experiment.from_dict(settings)
        check_names(experiment)
    except (TypeError, KeyError, ValueError, AttributeError) as err:
        raise InputError(path, f"holds experiment settings of another version: {err}") from None
    return experiment


def load_trained(path: str | Path) -> Trained:
    """The trained network of a checkpoint: built on the meta device and given the
    checkpoint's tensors, so that no initial weights are drawn (a second for a large
    encoder), unless the network has tensors a state dict does not hold."""
    checkpoint = read_checkpoint(path)
    experiment = checkpoint.experiment
    model = dataclasses.replace(experiment.model, encoder_weights=None)
    with torch.device("meta"):
        network = build_model(model, experiment.channels, None, fused=experiment.fused)
    on_meta = not _unsaved_buffers(network)
    if not on_meta:
        network = build_model(model, experiment.channels, None, fused=experiment.fused)
    weights = {
        name.removeprefix(NETWORK): value
        for name, value in checkpoint.state_dict.items()
        if name.startswith(NETWORK)
    }
    load_fitting(network, weights, path, "the experiment it names", assign=on_meta)
    if experiment.channels_last:
        network = network.to(memory_format=torch.channels_last)
    return Trained(experiment, checkpoint.data, network)


def _unsaved_buffers(network: nn.Module) -> set[str]:
    """The network's buffers that its state dict leaves out (made when it is built)."""
    return set(dict(network.named_buffers())) - set(network.state_dict())

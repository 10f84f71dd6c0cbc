"""Which library builds an experiment's encoder, and where its ImageNet weights are kept.

Light on purpose: the workflow reads it when it parses the rules.
"""

from __future__ import annotations

LWREFINENET = "lwrefinenet"  # the architecture built on timm; every other one is smp's
LIBRARIES = ("smp", "timm")


def library_of(architecture: str) -> str:
    """The library whose encoders an architecture uses."""
    return "timm" if architecture.lower() == LWREFINENET else "smp"


def weights_name(library: str, encoder: str) -> str:
    """The file name of an encoder's ImageNet weights (:mod:`builtup.train.weights`)."""
    return f"{library}-{encoder}-imagenet.pth"


def weights_file(architecture: str, encoder: str, folder: str) -> str:
    """The file in ``folder`` that holds the ImageNet weights of a network's encoder."""
    return f"{folder}/{weights_name(library_of(architecture), encoder)}"

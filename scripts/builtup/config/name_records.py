"""Records of the experiments whose names and arguments already built
(:func:`builtup.train.names.checked`), so that a dry run imports the training libraries
only for an experiment it has not seen built.

A record is an empty file named by a digest of everything the check reads: the
experiment's settings (its file merged with the config's fallbacks), the versions of the
libraries that build them, and the source of this package.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
from pathlib import Path

from builtup.config.experiment import Experiment

# The libraries whose registries and signatures the names are checked against, by
# distribution (whose version the records hold) and module
BUILDERS = {
    "torch": "torch",
    "timm": "timm",
    "segmentation-models-pytorch": "segmentation_models_pytorch",
    "albumentations": "albumentations",
}
PACKAGE = Path(__file__).resolve().parents[1]


def builders_installed() -> bool:
    """Whether this environment can check the names (the pip environment of ``make setup``
    can; one that only runs Snakemake for conda jobs may not, and there the train jobs
    check them)."""
    return all(importlib.util.find_spec(module) is not None for module in BUILDERS.values())


@functools.cache
def _environment_digest() -> bytes:
    digest = hashlib.sha256()
    for dist in BUILDERS:
        digest.update(f"{dist}=={importlib.metadata.version(dist)}\n".encode())
    for source in sorted(PACKAGE.rglob("*.py")):
        digest.update(source.read_bytes())
    return digest.digest()


def record_name(experiment: Experiment) -> str:
    return hashlib.sha256(_environment_digest() + repr(experiment).encode()).hexdigest()


def is_recorded(experiment: Experiment, folder: Path) -> bool:
    return (folder / record_name(experiment)).exists()


def record(experiment: Experiment, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / record_name(experiment)).touch()

"""Files of tensors (encoder weights, checkpoints) read as plain data and tensors only, so
that a shared file cannot run code when it is loaded; every fault one line naming the file."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch

from builtup.core.checksums import verified
from builtup.core.errors import InputError, one_line


def read_tensors(path: str | Path, what: str) -> dict:
    """The mapping a ``.pth``/``.ckpt`` file holds, checked against its ``.sha256``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"{what} does not exist")
    verified(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise InputError(
            path,
            f"refused: the {what} holds objects other than plain data and tensors "
            "(loading it could run code)",
        ) from None
    except Exception as err:  # noqa: BLE001 (whatever torch fails on, the file is unusable)
        raise InputError(path, f"is not a readable {what}: {one_line(err)}") from None
    if not isinstance(data, dict):
        raise InputError(
            path, f"holds a {type(data).__name__}, not a mapping ({what}s map names to tensors)"
        )
    return data


def state_dict_in(data: Mapping, path: str | Path, key: str = "state_dict") -> dict:
    """The tensors under ``key`` of a file's mapping (or the mapping itself, for a bare
    state dict); InputError when they are not tensors by name."""
    state = data.get(key, data)
    if not isinstance(state, dict) or not all(
        isinstance(name, str) and isinstance(value, torch.Tensor) for name, value in state.items()
    ):
        raise InputError(path, f"its {key} is not a mapping of names to tensors")
    return state


def load_fitting(
    module: torch.nn.Module, state: dict, path: str | Path, what: str, *, assign: bool = False
) -> None:
    """``module.load_state_dict(state)`` (strict, torch's default: smp's DenseNet encoder
    overrides it without the argument); a mismatch in one line: the first fault of torch's
    list and how many more there are. ``assign``: the module takes the tensors themselves
    (a module built on the meta device)."""
    try:
        module.load_state_dict(state, **({"assign": True} if assign else {}))
    except RuntimeError as err:
        faults = [line.strip() for line in str(err).splitlines()[1:] if line.strip()]
        first = faults[0] if faults else one_line(err)
        more = f" (and {len(faults) - 1} more)" if len(faults) > 1 else ""
        raise InputError(path, f"weights do not fit {what}: {first}{more}") from None

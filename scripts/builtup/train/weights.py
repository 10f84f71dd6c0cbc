"""ImageNet encoder weights for offline GPU nodes: fetched once, where the network is.

An experiment with ``encoder_weights: imagenet`` trains from the file
``resources/weights/<library>-<encoder>-imagenet.pth`` (the encoder's state dict, as
:func:`builtup.train.models.load_encoder_weights` reads it) with its sha256 beside it in
``.sha256``. A local Snakemake rule writes both, downloading through smp (Hugging Face
hub) or timm; the training job only reads the file, so it never needs the network.
"""

from __future__ import annotations

from pathlib import Path

import torch

from builtup.core.checksums import checksum_path, sha256_of
from builtup.core.errors import InputError
from builtup.core.rasters import atomic_path
from builtup.train.models import LWRefineNet


def source_of(library: str, encoder: str) -> str:
    """Where the library downloads the encoder's ImageNet weights from."""
    if library == "smp":
        import segmentation_models_pytorch as smp

        settings = smp.encoders.encoders.get(encoder, {}).get("pretrained_settings", {})
        imagenet = settings.get("imagenet")
        if imagenet is None:
            raise ValueError(f"smp has no ImageNet weights for encoder {encoder!r}")
        if "repo_id" in imagenet:
            return f"https://huggingface.co/{imagenet['repo_id']}"
        return imagenet["url"]
    import timm

    config = timm.models.get_pretrained_cfg(encoder)
    if config is None:
        raise ValueError(f"timm has no pretrained weights for {encoder!r}")
    return f"https://huggingface.co/{config.hf_hub_id}" if config.hf_hub_id else config.url


def pretrained_encoder(library: str, encoder: str) -> torch.nn.Module:
    """The encoder as the workflow's models build it, with the library's ImageNet weights."""
    if library == "smp":
        import segmentation_models_pytorch as smp

        return smp.encoders.get_encoder(encoder, weights="imagenet")
    return LWRefineNet.pretrained_encoder(encoder)


def fetch_weights(library: str, encoder: str, out_path: str | Path) -> dict:
    """Download the encoder's ImageNet weights and write them with their sha256; without a
    network, one line naming the file to place and where it comes from."""
    out_path = Path(out_path)
    try:
        source = source_of(library, encoder)
    except ValueError as err:
        raise InputError(out_path, str(err)) from None
    try:
        state = pretrained_encoder(library, encoder).state_dict()
    except Exception as err:  # noqa: BLE001 (hub, HTTP and OS errors alike mean "not here")
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise InputError(
            out_path,
            f"cannot download the ImageNet weights of {library} encoder {encoder} from "
            f"{source} ({reason}). On a machine with network run "
            f"`builtup fetch-weights {library} {encoder} -o {out_path}` and copy the file "
            "and its .sha256 here, or set model.encoder_weights to a local weights file",
        ) from None
    with atomic_path(out_path) as tmp:
        torch.save(state, tmp)
    checksum = sha256_of(out_path)
    with atomic_path(checksum_path(out_path)) as tmp:
        tmp.write_text(f"{checksum}  {out_path.name}\n")
    return {"path": str(out_path), "source": source, "sha256": checksum}

"""ImageNet encoder weights fetched once into resources/weights/, never by a training job."""

from dataclasses import replace

import pytest
import torch

from builtup.config.encoders import weights_file
from builtup.core.checksums import sha256_of
from builtup.core.errors import InputError
from builtup.train import weights
from builtup.train.models import build_model
from builtup.train.weights import fetch_weights

from conftest import network


def test_weights_files_are_named_by_library_and_encoder():
    assert weights_file("FPN", "resnet50", "resources/weights") == (
        "resources/weights/smp-resnet50-imagenet.pth"
    )
    assert weights_file("lwrefinenet", "mobilenetv2_100", "resources/weights") == (
        "resources/weights/timm-mobilenetv2_100-imagenet.pth"
    )


def test_without_network_one_line_names_the_file_and_its_source(tmp_path, monkeypatch):
    import huggingface_hub.constants

    # as on an offline node, without waiting for connection timeouts
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    out = tmp_path / "smp-resnet18-imagenet.pth"
    with pytest.raises(InputError) as err:
        fetch_weights("smp", "resnet18", out)
    message = str(err.value)
    assert "\n" not in message and str(out) in message
    assert "https://huggingface.co/smp-hub/resnet18.imagenet" in message
    assert f"builtup fetch-weights smp resnet18 -o {out}" in message
    assert not out.exists() and not out.with_name(out.name + ".sha256").exists()


def test_fetched_weights_are_written_with_their_checksum_and_train_offline(tmp_path, monkeypatch):
    """The download replaced by a local encoder (the test's 'hub'): the file the rule writes
    is what a model with encoder_weights pointing at it starts from."""
    spec = network("lwrefinenet", "mobilenetv2_050", width=16)
    hub = build_model(spec, 3, None).encoder
    monkeypatch.setattr(weights, "pretrained_encoder", lambda library, encoder: hub)
    out = tmp_path / "timm-mobilenetv2_050-imagenet.pth"
    summary = fetch_weights("timm", "mobilenetv2_050", out)
    assert summary["sha256"] == sha256_of(out)
    assert (tmp_path / f"{out.name}.sha256").read_text().split() == [summary["sha256"], out.name]
    assert summary["source"].startswith("https://")
    model = build_model(replace(spec, encoder_weights=str(out)), 3, None)
    for name, value in hub.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[name], value), name


def test_an_encoder_without_imagenet_weights_is_named(tmp_path):
    with pytest.raises(InputError, match="timm has no pretrained weights for 'nosuchnet'"):
        fetch_weights("timm", "nosuchnet", tmp_path / "x.pth")

import copy
import json
import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from builtup.config.experiment import LossTerm, OptimizerSettings
from builtup.core.checksums import sha256_of
from builtup.core.errors import InputError
from builtup.train.data import TargetWeightedSampler
from builtup.train.losses import WeightedSum
from builtup.train.models import ChainedResidualPooling, LWRefineNet, build_model
from builtup.train.names import load_experiment

from conftest import REPO, network

EXPERIMENTS = sorted((REPO / "config" / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_shipped_experiment_builds_and_steps(path):
    experiment = load_experiment(path)
    torch.manual_seed(0)  # the architecture only: ImageNet weights are the weights rule's
    model = build_model(replace(experiment.model, encoder_weights=None), experiment.channels, None)
    x = torch.randn(2, experiment.channels, 64, 64)
    y = torch.randint(0, 2, (2, 64, 64))
    logits = model(x)
    assert logits.shape == (2, 2, 64, 64)
    WeightedSum(experiment.loss)(logits, y).backward()
    without_gradient = [name for name, p in model.named_parameters() if p.grad is None]
    # smp keeps encoder layers its architectures never call (EfficientNet's head, PSPNet's
    # levels below its depth); everything else, the input convolution first, learns
    assert all(name.startswith("encoder.") for name in without_gradient), without_gradient
    assert next(model.parameters()).grad is not None


def test_the_seed_experiments_keep_the_seed_files_settings():
    """Facts from the 3rd place's configs/train and configs/inference files (docs/replicas.md)."""
    lw = load_experiment(REPO / "config/experiments/lwrefinenet.yaml")
    assert lw.optimizer == OptimizerSettings("sgd", 0.05, 0.9, True, 5e-4)
    assert (lw.batch_size, lw.accumulate, lw.epochs) == (22, 1, 100)
    assert lw.loss == (LossTerm("ce", 1.0, {"class_weights": [0.1, 2.0]}),)
    # weight_per_class=(0.7, 0.3) indexed by "tile has built-up"
    assert (lw.sampler.with_target, lw.sampler.without_target) == (0.3, 0.7)
    fpn = load_experiment(REPO / "config/experiments/fpn_se_resnext50_db.yaml")
    assert fpn.model.encoder == "se_resnext50_32x4d" and fpn.recipe == "db3"
    assert fpn.loss == (LossTerm("ce", 1.0, {"class_weights": [0.5, 1.5]}),)
    assert (fpn.optimizer.name, fpn.optimizer.lr) == ("adam", 2e-3)
    assert (fpn.batch_size, fpn.accumulate, fpn.epochs) == (23, 2, 50)
    assert fpn.schedule.restart_at == 0.5
    assert fpn.schedule.restart_factor == 0.5
    assert fpn.tta == "rot90" and fpn.precision == "16-mixed"
    for experiment in (lw, fpn):
        names = [t["name"] for t in experiment.augmentation]
        assert names == ["RandomResizedCrop", "OneOf"]  # no CoarseDropout in the 3rd place's files
        assert experiment.augmentation[1]["p"] == 0.5


def test_lwrefinenet_any_channel_count():
    model = LWRefineNet("mobilenetv2_050", in_channels=6, width=32)
    assert model(torch.randn(1, 6, 70, 90)).shape == (1, 2, 70, 90)


def test_chained_residual_pooling_pools_channels_last_on_the_cpu_with_the_same_results():
    crp = ChainedResidualPooling(16)
    layouts = []
    crp.pool.register_forward_pre_hook(
        lambda _, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    x = torch.randn(2, 16, 40, 56).relu().requires_grad_()
    y = crp(x)
    assert layouts == [True] * 4 and y.is_contiguous()
    y.square().sum().backward()

    plain = copy.deepcopy(crp)
    plain.pooled = plain.pool  # the pools on contiguous memory
    x_plain = x.detach().clone().requires_grad_()
    y_plain = plain(x_plain)
    y_plain.square().sum().backward()
    assert torch.equal(y, y_plain) and torch.equal(x.grad, x_plain.grad)


def test_lwrefinenet_head_at_stride_2_adds_the_finest_level_with_the_same_encoder():
    fine = LWRefineNet("mobilenetv2_050", width=16, head_stride=2)
    coarse = LWRefineNet("mobilenetv2_050", width=16)
    assert fine(torch.randn(1, 3, 70, 90)).shape == (1, 2, 70, 90)
    assert fine.encoder.feature_info.reduction() == [2, 4, 8, 16, 32]
    assert coarse.encoder.feature_info.reduction() == [4, 8, 16, 32]
    coarse.encoder.load_state_dict(fine.encoder.state_dict())  # one weights file for both
    with pytest.raises(ValueError, match="head_stride must be 2 or 4"):
        LWRefineNet("mobilenetv2_050", head_stride=8)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"model": {"architecture": "UNetXL", "encoder": "resnet18"}},
            "unknown architecture 'UNetXL'",
        ),
        (
            {"model": {"architecture": "Unet", "encoder": "resnet9000"}},
            "unknown encoder 'resnet9000'",
        ),
        (
            {"model": {"architecture": "lwrefinenet", "encoder": "nonet"}},
            "unknown timm encoder 'nonet'",
        ),
        ({"recipe": "rgb"}, "recipe: 'rgb' is not one of"),
        ({"loss": [{"name": "hinge"}]}, "'hinge' is not one of"),
        ({"augmentation": {"train": [{"name": "Teleport"}]}}, "unknown augmentation 'Teleport'"),
        ({"epochs": "many"}, "epochs: 'many' is not of type 'integer'"),
        ({"colour": 1}, "Additional properties are not allowed ('colour'"),
        ({"prediction": {"stitch": "crop", "window": 1120}}, "stitch crop needs window"),
        ({"prediction": {"stitch": "crop", "window": 512, "kept": 511}}, "window - kept even"),
        ({"sampler": {"source": "scenes", "window": 500}}, "500 is not a multiple of 32"),
        ({"start_from": "bad"}, "start_from names the experiment itself"),
        (
            {
                "start_from": "demo",
                "model": {
                    "architecture": "Unet",
                    "encoder": "resnet18",
                    "encoder_weights": "imagenet",
                },
            },
            "start_from demo gives every starting weight: set model.encoder_weights to null",
        ),
        ({"checkpoint": "best"}, "checkpoint: 'best' is not one of"),
        ({"tta": "rot90_without_identity"}, "tta: 'rot90_without_identity' is not one of"),
        (
            {"prediction": {"window": 512, "overlap": 512}},
            "prediction.overlap (512 px) must be less than prediction.window (512 px)",
        ),
        ({"prediction": {"overlap": 600}}, "prediction.overlap (600 px) must be less than"),
        (
            {"model": {"architecture": "Unet", "encoder": "tu-nosuchnet"}},
            "unknown encoder 'tu-nosuchnet': timm has no 'nosuchnet'",
        ),
        (
            {
                "model": {
                    "architecture": "lwrefinenet",
                    "encoder": "mobilenetv2_100",
                    "options": {"widht": 32},
                }
            },
            "model.options: LWRefineNet has no option widht (its options: width, head_stride)",
        ),
        (
            {
                "model": {
                    "architecture": "lwrefinenet",
                    "encoder": "mobilenetv2_100",
                    "options": {"head_stride": 3},
                }
            },
            "model: LW-RefineNet head_stride must be 2 or 4, not 3",
        ),
        (
            {
                "model": {
                    "architecture": "Unet",
                    "encoder": "resnet18",
                    "options": {"decoder_chanels": [16]},
                }
            },
            "model.options: Unet has no option decoder_chanels",
        ),
        (
            {
                "model": {
                    "architecture": "Unet",
                    "encoder": "resnet18",
                    "options": {"decoder_attention_type": "scsee"},
                }
            },
            "model: ",
        ),
        ({"augmentation": {"train": [{"name": "OneOf"}]}}, "OneOf needs a list of transforms"),
        (
            {"augmentation": {"train": [{"name": "__version__"}]}},
            "unknown augmentation '__version__'",
        ),
        (
            {
                "augmentation": {
                    "train": [
                        {"name": "OneOf", "transforms": [{"name": "HorizontalFlip", "pp": 1}]}
                    ]
                }
            },
            "augmentation HorizontalFlip: Argument(s) 'pp' are not valid",
        ),
        (
            {"augmentation": {"train": [{"name": "RandomResizedCrop", "size": 5}]}},
            "augmentation RandomResizedCrop: size: Input should be a valid tuple",
        ),
    ],
)
def test_bad_experiments_fail_before_training(tmp_path, change, message):
    import yaml

    spec = yaml.safe_load((REPO / "config/experiments/demo.yaml").read_text())
    spec.update(change)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(InputError, match=re.escape(message)) as err:
        load_experiment(path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


def test_encoder_weights_file(tmp_path):
    spec = network("lwrefinenet", "mobilenetv2_050", width=16)
    source = build_model(spec, 3, None)
    torch.save(source.encoder.state_dict(), tmp_path / "enc.pth")
    loaded = build_model(replace(spec, encoder_weights=str(tmp_path / "enc.pth")), 3, None)
    for a, b in zip(
        source.encoder.state_dict().values(), loaded.encoder.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    other = build_model(replace(spec, encoder="mobilenetv2_100"), 3, None)
    torch.save(other.encoder.state_dict(), tmp_path / "other.pth")
    with pytest.raises(InputError, match="weights do not fit the encoder"):
        build_model(replace(spec, encoder_weights=str(tmp_path / "other.pth")), 3, None)
    with pytest.raises(InputError, match="does not exist"):
        build_model(replace(spec, encoder_weights=str(tmp_path / "missing.pth")), 3, None)
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(InputError, match="is not a readable encoder weights file"):
        build_model(replace(spec, encoder_weights=str(tmp_path / "junk.pth")), 3, None)


def test_weights_file_of_an_encoder_that_overrides_load_state_dict(tmp_path):
    """smp's DenseNet encoder takes no ``strict`` argument (it renames old keys first)."""
    spec = network("Linknet", "densenet121")
    torch.save(build_model(spec, 3, None).encoder.state_dict(), tmp_path / "densenet.pth")
    loaded = build_model(replace(spec, encoder_weights=str(tmp_path / "densenet.pth")), 3, None)
    saved = torch.load(tmp_path / "densenet.pth", weights_only=True)
    assert all(torch.equal(saved[k], v) for k, v in loaded.encoder.state_dict().items())


def test_rgb_weights_are_adapted_to_other_channel_counts(tmp_path):
    """As timm and smp do for ImageNet weights: the first convolution's RGB kernels repeated
    over the input channels and scaled by 3 / channels; every other weight as saved."""
    spec = network("Unet", "resnet18")
    source = build_model(spec, 3, None)
    torch.save(source.encoder.state_dict(), tmp_path / "rgb.pth")
    loaded = build_model(replace(spec, encoder_weights=str(tmp_path / "rgb.pth")), 4, None)
    rgb, four = source.encoder.conv1.weight, loaded.encoder.conv1.weight
    assert four.shape[1] == 4
    torch.testing.assert_close(four[:, :3], rgb * 3 / 4)
    torch.testing.assert_close(four[:, 3], rgb[:, 0] * 3 / 4)
    torch.testing.assert_close(
        loaded.encoder.layer1[0].conv1.weight, source.encoder.layer1[0].conv1.weight
    )


def test_a_weights_file_that_differs_from_its_checksum_is_refused(tmp_path):
    spec = network("lwrefinenet", "mobilenetv2_050", width=16)
    path = tmp_path / "enc.pth"
    torch.save(build_model(spec, 3, None).encoder.state_dict(), path)
    (tmp_path / "enc.pth.sha256").write_text(f"{sha256_of(path)}  enc.pth\n")
    build_model(replace(spec, encoder_weights=str(path)), 3, None)
    with open(path, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(InputError) as err:
        build_model(replace(spec, encoder_weights=str(path)), 3, None)
    assert str(err.value) == f"{path}: sha256 differs from enc.pth.sha256: corrupt or replaced"


def test_sampler_frequencies_match_weights():
    has_target = np.zeros(100, bool)
    has_target[:10] = True
    sampler = TargetWeightedSampler(has_target, 0.7, 0.3, num_samples=200_000, seed=3)
    draws = np.fromiter(iter(sampler), int)
    expected = 10 * 0.7 / (10 * 0.7 + 90 * 0.3)
    assert has_target[draws].mean() == pytest.approx(expected, abs=0.005)
    counts = np.bincount(draws, minlength=100)
    assert counts[:10].std() / counts[:10].mean() < 0.05


def test_sampler_under_ddp_splits_one_draw():
    has_target = np.arange(50) % 3 == 0
    full = list(TargetWeightedSampler(has_target, 0.5, 0.5, 20, seed=1))
    ranks = [
        list(TargetWeightedSampler(has_target, 0.5, 0.5, 20, seed=1, rank=r, world_size=2))
        for r in (0, 1)
    ]
    assert len(ranks[0]) == len(ranks[1]) == 10
    assert ranks[0] == full[0::2] and ranks[1] == full[1::2]
    sampler = TargetWeightedSampler(has_target, 0.5, 0.5, 20, seed=1)
    sampler.set_epoch(1)
    assert list(sampler) != full


def test_training_tiles_come_from_the_stacks_given(tmp_path):
    """The train rule hands its declared stacks over: no tile path is rebuilt from a root."""
    import pandas as pd

    from builtup.core.errors import InputError
    from builtup.train.data import TileDataset, scene_stacks

    folder = tmp_path / "elsewhere" / "38SLF_Mosul" / "20150108_DES"
    folder.mkdir(parents=True)
    images = np.full((2, 3, 32, 32), 0.1, np.float32)
    images[1] *= 2
    np.save(folder / "images.npy", images)
    np.save(folder / "masks.npy", np.zeros((2, 32, 32), np.uint8))
    stacks = scene_stacks([folder / "images.npy"], [folder / "masks.npy"])
    rows = pd.DataFrame(
        {"city": ["38SLF_Mosul"], "scene": ["20150108_DES"], "tile": [1], "target_ratio": [0.0]}
    )
    x, y = TileDataset(rows, stacks, "linear3", [0.0] * 3, [1.0] * 3)[0]
    assert x.shape == (32, 32, 3) and torch.allclose(x, torch.tensor(0.2))
    other = rows.assign(scene="20150120_ASC")
    with pytest.raises(InputError, match="stacks were not given"):
        TileDataset(other, stacks, "linear3", [0.0] * 3, [1.0] * 3)


def test_every_rank_draws_whole_batches():
    """A BatchNorm fed one sample fails (DeepLabV3's pooled ASPP branch): every rank's share
    of an epoch is whole batches, the epoch's length rounded up."""
    has_target = np.arange(30) % 2 == 0
    for world_size in (1, 2):
        for rank in range(world_size):
            sampler = TargetWeightedSampler(
                has_target, 0.5, 0.5, 19, seed=2, rank=rank, world_size=world_size, batch_size=4
            )
            assert len(sampler) % 4 == 0 and len(list(sampler)) == len(sampler)
            assert len(sampler) * world_size >= 19


def test_sampler_draws_from_more_than_two_to_the_24_positions():
    """torch.multinomial refuses more than 2**24 categories (about 170 full-size scenes of
    window positions)."""
    has_target = np.zeros(2**24 + 3, bool)
    has_target[-1] = True
    draws = list(TargetWeightedSampler(has_target, 1.0, 0.0, 5, seed=0))
    assert draws == [2**24 + 2] * 5


def stack_tiles(folder, acquisitions, rng):
    """One 32 px tile of a stack of ``acquisitions`` (VV, VH in dB), the last acquisition
    without data in the left half; its mask all background."""
    from builtup.core.bands import stack_descriptions
    from builtup.prepare.tiles import TileSet

    folder.mkdir(parents=True)
    images = rng.normal(-12, 3, (1, 2 * acquisitions, 32, 32)).astype(np.float32)
    images[0, -2:, :, :16] = np.nan
    np.save(folder / "images.npy", images)
    np.save(folder / "masks.npy", np.zeros((1, 32, 32), np.uint8))
    bands = list(stack_descriptions([f"s{k}" for k in range(acquisitions)]))
    (folder / "tiles.json").write_text(json.dumps({"bands": bands, "tile_size": 32}))
    return TileSet.in_folder(folder), images[0]


def stack_rows(*cities):
    import pandas as pd

    return pd.DataFrame(
        {"city": list(cities), "scene": ["stack"] * len(cities), "tile": [0] * len(cities)}
    ).assign(target_ratio=0.0)


def test_each_stack_draw_reads_a_random_subset_of_its_acquisitions(tmp_path):
    """Training draws of a stack recipe see the statistics of 2 to all acquisitions (so
    both counts of a 3-acquisition city, and every subset, turn up); validation all."""
    from builtup.core.recipes import get_recipe
    from builtup.train.data import TileDataset, drawn_acquisitions

    rng = np.random.default_rng(0)
    tiles, image = stack_tiles(tmp_path / "A_a" / "stack", 3, rng)
    rows, stacks = stack_rows("A_a"), {("A_a", "stack"): tiles}
    draws = np.random.default_rng(1)
    counts = [len(drawn_acquisitions(image, 2, draws)) // 2 for _ in range(200)]
    assert set(counts) == {2, 3}
    assert len(drawn_acquisitions(image[:2], 2, draws)) == 2  # a 1-acquisition city: all of it
    norm = ([0.0] * 4, [1.0] * 4)
    training = TileDataset(rows, stacks, "stack_mean_std", *norm, min_acquisitions=2)
    training.seed(5)
    means = {round(float(training[0][0][20, 20, 0]), 4) for _ in range(60)}
    assert len(means) >= 3  # the VV mean of several subsets
    validation = TileDataset(rows, stacks, "stack_mean_std", *norm)
    full = get_recipe("stack_mean_std")(image, np.ones((32, 32), bool))
    x, _ = validation[0]
    np.testing.assert_allclose(x.numpy().transpose(2, 0, 1), full, rtol=1e-6)


def test_series_samples_of_cities_with_other_counts_share_a_batch(tmp_path):
    """A series sample is padded with all-0 acquisitions to the fold's longest stack; an
    acquisition's pixels without data are 0 after normalisation too."""
    from torch.utils.data import default_collate

    from builtup.train.data import TileDataset

    rng = np.random.default_rng(0)
    short, _ = stack_tiles(tmp_path / "A_a" / "stack", 2, rng)
    long, image = stack_tiles(tmp_path / "B_b" / "stack", 4, rng)
    stacks = {("A_a", "stack"): short, ("B_b", "stack"): long}
    dataset = TileDataset(stack_rows("A_a", "B_b"), stacks, "series_db2", [-12.0] * 2, [3.0] * 2)
    x, y = default_collate([dataset[0], dataset[1]])
    assert x.shape == (2, 32, 32, 4 * 2) and y.shape == (2, 32, 32)
    assert (x[0, ..., 4:] == 0).all()  # A_a: two acquisitions, two of padding
    assert (x[0, :, :16, 2:4] == 0).all() and (x[0, :, 16:, 2:4] != 0).all()
    expected = (image[:2, :, :] + 12) / 3  # B_b's first acquisition, normalised
    np.testing.assert_allclose(x[1, ..., :2].numpy().transpose(2, 0, 1), expected, rtol=1e-5)


@pytest.mark.parametrize(
    "architecture, encoder", [("lwrefinenet", "mobilenetv2_050"), ("FPN", "resnet18")]
)
def test_a_fused_model_is_order_free_and_leaves_absent_acquisitions_out(architecture, encoder):
    torch.manual_seed(0)
    model = build_model(network(architecture, encoder), 2, None, fused=True).eval()
    x = torch.randn(2, 4 * 2, 64, 64)
    x[0, 4:] = 0  # the first sample: two acquisitions and two of padding
    with torch.no_grad():
        out = model(x)
        reordered = model(x.unflatten(1, (4, 2))[:, [3, 1, 0, 2]].flatten(1, 2))
        alone = model(x[:1, :4])
    assert out.shape == (2, 2, 64, 64)
    torch.testing.assert_close(reordered, out, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(alone, out[:1], atol=1e-4, rtol=1e-4)


def test_padding_of_a_fused_model_never_reaches_its_batch_statistics():
    """In training, the encoder's BatchNorm sees the acquisitions only: a batch padded with
    blank acquisitions trains as the same batch without them."""

    torch.manual_seed(0)
    model = build_model(network("lwrefinenet", "mobilenetv2_050", width=16), 2, None, fused=True)
    padded = copy.deepcopy(model).train()
    model.train()
    x = torch.randn(3, 3 * 2, 64, 64)
    x[0, 4:] = 0  # the first sample: two acquisitions and one of padding
    out = model(x)
    out_padded = padded(torch.cat([x, torch.zeros(3, 2 * 2, 64, 64)], dim=1))
    torch.testing.assert_close(out_padded, out)
    theirs = padded.state_dict()
    for name, ours in model.state_dict().items():
        torch.testing.assert_close(theirs[name], ours, msg=name)
    first_bn = next(m for m in padded.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert first_bn.num_batches_tracked == 3  # one update per acquisition that a sample holds


def write_experiments(folder, **specs):
    import yaml

    for name, spec in specs.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec))


def test_a_delivery_variant_takes_the_models_settings_of_the_experiment_it_names(tmp_path):
    import yaml

    base = yaml.safe_load((REPO / "config/experiments/demo.yaml").read_text())
    base["prediction"] = {"stitch": "blend", "window": 256, "overlap": 64}
    variant = {"models_of": "demo", "prediction": {"overlap": 0, "fold_models": "X_x"}}
    write_experiments(tmp_path, demo=base, variant=variant)
    read = load_experiment(tmp_path / "variant.yaml")
    demo = load_experiment(tmp_path / "demo.yaml")
    assert read.models == "demo" and demo.models == "demo"
    assert read.training_settings() == demo.training_settings()
    assert (read.prediction.window, read.prediction.overlap) == (256, 0)
    assert read.prediction.fold_models == "X_x" and demo.prediction.fold_models == "all"
    for bad, message in (
        ({"models_of": "demo", "epochs": 3}, "this file sets only description, .*not epochs"),
        ({"models_of": "variant"}, "models_of variant, which predicts with the models of another"),
        ({"models_of": "missing"}, "missing.yaml: experiment file does not exist"),
    ):
        write_experiments(tmp_path, again=bad)
        with pytest.raises(InputError, match=message):
            load_experiment(tmp_path / "again.yaml")


def test_start_from_chains_and_networks_are_checked(tmp_path):
    import yaml

    from builtup.config.experiment import check_no_start_cycle, check_same_network

    demo = yaml.safe_load((REPO / "config/experiments/demo.yaml").read_text())
    write_experiments(
        tmp_path,
        a={**demo, "start_from": "b"},
        b={**demo, "start_from": "a"},
        wide={**demo, "model": {**demo["model"], "options": {"width": 32}}},
    )
    read = {n: load_experiment(tmp_path / f"{n}.yaml") for n in ("a", "b", "wide")}
    with pytest.raises(InputError, match="start_from goes round in a circle: a -> b -> a"):
        check_no_start_cycle(read)
    check_same_network(read["a"], read["b"])
    with pytest.raises(InputError, match="start_from b builds another network"):
        check_same_network(read["wide"], read["b"])

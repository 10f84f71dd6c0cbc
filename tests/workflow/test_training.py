"""Training on the tiny demo: train rule, kill-and-resume, determinism, DDP on 2 CPU processes."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from builtup.core.checksums import sha256_of
from builtup.core.errors import InputError
from builtup.train.data import stacks_under
from builtup.train.datamodule import TrainingData
from builtup.train.models import LWRefineNet
from builtup.train.names import load_experiment

from conftest import TINY, Sandbox, rewrite_pixel

pytestmark = pytest.mark.slow

FOLD = "38SLF_Mosul"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    box = Sandbox(tmp_path_factory.mktemp("training"))
    (box.root / "config/experiments/tiny.yaml").write_text(yaml.safe_dump(TINY, sort_keys=False))
    box.config["experiments"] = ["tiny"]
    box.write_config()
    result = box.snakemake(
        *(f"results/folds/{c}/summary.json" for c in ("38SLF_Mosul", "38SMA_Najaf"))
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return box


def cli_train(box, out, *extra, experiment="config/experiments/tiny.yaml", workers=0):
    exe = Path(sys.executable).with_name("builtup")
    return [
        str(exe),
        "train",
        str(experiment),
        "--fold",
        FOLD,
        "--out",
        str(out),
        "--workers",
        str(workers),
        *extra,
    ]


def epochs_table(folder):
    return pd.read_csv(Path(folder) / "metrics.csv")


def test_train_rule_on_the_demo(tiny):
    result = tiny.snakemake(f"results/models/tiny/{FOLD}/model.ckpt")
    assert result.returncode == 0, result.stderr[-3000:]
    folder = tiny.root / f"results/models/tiny/{FOLD}"
    table = epochs_table(folder)
    assert table["epoch"].tolist() == [0, 1]
    assert {"train/loss", "val/loss", "val/iou_1", "val/f1", "lr"} <= set(table.columns)
    assert (folder / "curves.png").stat().st_size > 1000 and (
        folder / "samples.png"
    ).stat().st_size > 1000
    log = (tiny.root / f"results/logs/train/tiny/{FOLD}.log").read_text()
    assert "epoch 1/2" in log and "epoch 2/2" in log
    checkpoint = torch.load(folder / "model.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["hyper_parameters"]["experiment"]["recipe"] == "db3"
    # the model is the last epoch's: nothing was chosen on the held-out city it is scored on
    # one resume point; the delivered model without the optimiser's state
    assert [p.name for p in (folder / "checkpoints").iterdir()] == ["last.ckpt"]
    last = torch.load(folder / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["global_step"] == last["global_step"] > 0
    assert "optimizer_states" in last and "optimizer_states" not in checkpoint
    assert (folder / "model.ckpt").stat().st_size < 0.6 * (
        folder / "checkpoints/last.ckpt"
    ).stat().st_size
    for name, value in last["state_dict"].items():
        assert torch.equal(checkpoint["state_dict"][name], value), name


def kill_after_first_checkpoint(command, cwd, last):
    """Start ``command`` in its own process group; SIGKILL the group once ``last`` exists."""
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert last.exists(), "no checkpoint was written"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_killed_training_resumes_from_last_checkpoint(tiny, tmp_path):
    out = tmp_path / "model"
    last = out / "checkpoints" / "last.ckpt"
    kill_after_first_checkpoint(cli_train(tiny, out, "--max-epochs", "4"), tiny.root, last)
    done = torch.load(last, map_location="cpu", weights_only=False)["epoch"]
    assert done < 3 and not (out / "model.ckpt").exists()

    result = subprocess.run(
        cli_train(tiny, out, "--max-epochs", "4"),
        cwd=tiny.root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming from {last}" in result.stderr
    epochs_run = [line for line in result.stderr.splitlines() if "INFO epoch " in line]
    assert len(epochs_run) == 4 - (done + 1), epochs_run
    table = epochs_table(out)
    assert table["epoch"].tolist() == [0, 1, 2, 3]
    assert table["step"].is_monotonic_increasing


def test_snakemake_resumes_a_killed_training_job(tiny):
    (tiny.root / "config/experiments/tiny4.yaml").write_text(yaml.safe_dump({**TINY, "epochs": 4}))
    tiny.write_config({**tiny.config, "experiments": ["tiny", "tiny4"]})
    target = "results/models/tiny4/38SMA_Najaf/model.ckpt"
    last = tiny.root / "results/models/tiny4/38SMA_Najaf/checkpoints/last.ckpt"
    exe = Path(sys.executable).with_name("snakemake")
    kill_after_first_checkpoint([str(exe), "--cores", "2", target], tiny.root, last)
    try:
        assert tiny.snakemake("--unlock").returncode == 0  # a hard kill leaves Snakemake's lock
        result = tiny.snakemake(target)
    finally:
        tiny.write_config()
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tiny.root / "results/logs/train/tiny4/38SMA_Najaf.log").read_text()
    assert "resuming from" in log
    assert epochs_table(last.parent.parent)["epoch"].tolist() == [0, 1, 2, 3]


def test_rerun_of_a_finished_or_changed_training(tiny, tmp_path):
    out = tmp_path / "model"
    variant = tiny.root / "config/experiments/rerun.yaml"
    variant.write_text(yaml.safe_dump(TINY))
    command = cli_train(tiny, out, "--max-epochs", "1")
    command[2] = str(variant)
    assert subprocess.run(command, cwd=tiny.root, capture_output=True).returncode == 0
    for name in ("model.ckpt", "metrics.csv", "curves.png"):
        (out / name).unlink()  # what Snakemake does before it reruns a job
    again = subprocess.run(command, cwd=tiny.root, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming from" in again.stderr and "INFO epoch " not in again.stderr
    assert (out / "model.ckpt").exists() and len(epochs_table(out)) == 1
    variant.write_text(yaml.safe_dump({**TINY, "optimizer": {"name": "adamw", "lr": 0.001}}))
    changed = subprocess.run(command, cwd=tiny.root, capture_output=True, text=True, timeout=600)
    assert changed.returncode == 0, changed.stderr[-2000:]
    assert "trained with other settings: starting afresh" in changed.stderr
    assert "INFO epoch 1/1" in changed.stderr


def test_a_changed_training_scene_trains_a_new_model(tiny, tmp_path):
    """last.ckpt survives Snakemake's rerun of train: it must not be resumed on other data."""
    target = f"results/models/tiny/{FOLD}/model.ckpt"
    assert tiny.snakemake(target).returncode == 0
    box = Sandbox.copy(tiny, tmp_path / "box")
    before = torch.load(box.root / target, map_location="cpu", weights_only=True)
    scene = box.sheet_rows("38SMA_Najaf")[0]["scene"]
    rewrite_pixel(box.raw("38SMA_Najaf", scene))
    result = box.snakemake(target)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (box.root / f"results/logs/train/tiny/{FOLD}.log").read_text()
    assert "was trained on other data" in log and "starting afresh" in log, log[-2000:]
    assert "epoch 1/2" in log and "epoch 2/2" in log
    after = torch.load(box.root / target, map_location="cpu", weights_only=True)
    summary = json.loads((box.root / f"results/folds/{FOLD}/summary.json").read_text())
    assert after["hyper_parameters"]["data"]["normalisation"] == summary["normalisation"]["db3"]
    assert before["hyper_parameters"]["data"] != after["hyper_parameters"]["data"]


def test_same_seed_same_result(tiny, tmp_path):
    for name in ("a", "b"):
        result = subprocess.run(
            cli_train(tiny, tmp_path / name, "--max-epochs", "1"),
            cwd=tiny.root,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stderr[-2000:]
    a, b = epochs_table(tmp_path / "a"), epochs_table(tmp_path / "b")
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"))
    weights = [
        torch.load(tmp_path / n / "model.ckpt", map_location="cpu", weights_only=False)[
            "state_dict"
        ]
        for n in ("a", "b")
    ]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_validating_every_third_epoch_trains_the_same_weights(tiny, tmp_path):
    """Epochs 3 and 4 of 4 validated (the last always is), with a loader worker, whose seeds
    must not depend on how often validation ran."""
    rare = tmp_path / "tiny_every3.yaml"
    rare.write_text(yaml.safe_dump({**TINY, "validate_every": 3}))
    runs = {"every": "config/experiments/tiny.yaml", "rare": rare}
    for name, experiment in runs.items():
        command = cli_train(
            tiny, tmp_path / name, "--max-epochs", "4", experiment=experiment, workers=1
        )
        result = subprocess.run(command, cwd=tiny.root, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
    every, rare = (epochs_table(tmp_path / name) for name in runs)
    assert every["val/loss"].notna().all()
    assert rare["val/loss"].notna().tolist() == [False, False, True, True]
    assert rare["val/loss"].iloc[-1] == pytest.approx(every["val/loss"].iloc[-1])
    trained = ["epoch", "step", "lr", "train/loss"]
    pd.testing.assert_frame_equal(rare[trained], every[trained])
    weights = [
        torch.load(tmp_path / name / "model.ckpt", map_location="cpu", weights_only=False)[
            "state_dict"
        ]
        for name in runs
    ]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert (tmp_path / "rare" / "curves.png").stat().st_size > 1000


def test_ddp_on_two_cpu_processes(tiny, tmp_path):
    result = subprocess.run(
        cli_train(
            tiny,
            tmp_path / "ddp",
            "--max-epochs",
            "1",
            "--devices",
            "2",
            "--strategy",
            "ddp",
            "--accelerator",
            "cpu",
        ),
        cwd=tiny.root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in result.stderr
    table = epochs_table(tmp_path / "ddp")
    assert len(table) == 1 and 0 <= table.loc[0, "val/iou_1"] <= 1


def test_ddp_from_the_gpu_resource_of_the_train_rule(tiny):
    """A profile's `set-resources: train: gpu: 2` trains on two devices (here: CPU processes)."""
    spec = {**TINY, "epochs": 1, "accelerator": "auto"}
    (tiny.root / "config/experiments/tiny_ddp.yaml").write_text(yaml.safe_dump(spec))
    tiny.write_config({**tiny.config, "experiments": ["tiny", "tiny_ddp"]})
    try:
        result = tiny.snakemake(
            f"results/models/tiny_ddp/{FOLD}/model.ckpt", "--set-resources", "train:gpu=2"
        )
    finally:
        tiny.write_config()
    assert result.returncode == 0, result.stderr[-3000:]
    log = (tiny.root / f"results/logs/train/tiny_ddp/{FOLD}.log").read_text()
    assert "training process 1 of 2 on cpu" in log, log[-2000:]
    assert "training process 2 of 2 on cpu" in log, log[-2000:]
    assert len(epochs_table(tiny.root / f"results/models/tiny_ddp/{FOLD}")) == 1


def run_variant(tiny, out, name, **changes):
    path = tiny.root / f"config/experiments/{name}.yaml"
    path.write_text(yaml.safe_dump({**TINY, **changes}))
    command = cli_train(tiny, out, "--max-epochs", "1")
    command[2] = str(path)
    return subprocess.run(command, cwd=tiny.root, capture_output=True, text=True, timeout=600)


def test_bf16_mixed_and_channels_last_on_cpu(tiny, tmp_path):
    result = run_variant(
        tiny, tmp_path / "bf16", "bf16", precision="bf16-mixed", channels_last=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "bfloat16 Automatic Mixed Precision" in result.stderr
    assert len(epochs_table(tmp_path / "bf16")) == 1


def test_model_on_all_training_cities(tiny):
    result = tiny.snakemake("results/models/tiny/all/model.ckpt")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tiny.root / "results/folds/all/summary.json").read_text())
    assert summary["val_cities"] == [] and len(summary["train_cities"]) == 4
    table = epochs_table(tiny.root / "results/models/tiny/all")
    assert "train/loss" in table and "val/iou_1" not in table


def test_tensorboard_and_mlflow_loggers(tiny, tmp_path):
    result = run_variant(
        tiny, tmp_path / "logged", "logged", logging={"tensorboard": True, "mlflow": True}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((tmp_path / "logged" / "tensorboard").rglob("events.out.tfevents.*"))
    import mlflow

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(f"file:{tiny.root / 'results' / 'mlruns'}")
    runs = mlflow.search_runs(experiment_names=["Trainings"], output_format="list")
    assert len(runs) == 1
    run = runs[0]
    assert run.data.params["recipe"] == "db3" and "val/iou_1" in run.data.metrics
    artifacts = [a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)]
    assert "logged.yaml" in artifacts


def test_fold_without_usable_tiles_fails_before_training(tiny, tmp_path):
    fold = tiny.root / "results/folds" / FOLD
    tiles = pd.read_csv(fold / "tiles.tsv", sep="\t")
    tiles.loc[tiles["role"] == "train", "skip"] = True
    tiles.to_csv(tmp_path / "tiles.tsv", sep="\t", index=False)
    spec = load_experiment(tiny.root / "config/experiments/tiny.yaml")
    summary = json.loads((fold / "summary.json").read_text())
    with pytest.raises(InputError, match="no usable training tile"):
        TrainingData(spec, summary, tmp_path / "tiles.tsv", tiny.root / "results/tiles", 0)


def test_a_stack_experiment_draws_the_stacks_tiles_only(tiny):
    fold = tiny.root / "results/folds" / FOLD
    summary = json.loads((fold / "summary.json").read_text())
    tilesets = stacks_under(tiny.root / "results/tiles")
    spec = load_experiment(tiny.root / "config/experiments/tiny.yaml")
    stacked = TrainingData(
        replace(spec, recipe="stack_mean"), summary, fold / "tiles.tsv", tilesets, 0
    )
    scenes = TrainingData(spec, summary, fold / "tiles.tsv", tilesets, 0)
    assert {scene for (_, scene), _ in stacked.train_set.keys} == {"stack"}
    assert {scene for (_, scene), _ in stacked.val_set.keys} == {"stack"}
    assert "stack" not in {scene for (_, scene), _ in scenes.train_set.keys}
    assert len(stacked.train_set) == summary["tiles_by_kind"]["stack"]["train"] == 3 * 9
    image, mask = stacked.val_set[0]
    assert image.shape == (128, 128, 3) and torch.isfinite(image).all()


def test_imagenet_weights_come_from_the_local_fetch_rule(tiny, tmp_path, monkeypatch):
    """A training job never downloads: the weights are a file the local rule fetches, or one
    placed by hand beside its checksum; offline, one line says which file and from where."""
    box = Sandbox.copy(tiny, tmp_path / "box")
    path = box.root / "config/experiments/tiny.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["model"]["encoder_weights"] = "imagenet"
    path.write_text(yaml.safe_dump(spec))
    target = f"results/models/tiny/{FOLD}/model.ckpt"
    (box.root / target).unlink(missing_ok=True)  # an earlier test may have trained it
    weights = box.root / "resources/weights/timm-mobilenetv2_050-imagenet.pth"
    assert box.stale_jobs(target)["fetch_weights"] == 1

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # an offline node, without connection timeouts
    result = box.snakemake(target)
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR: ")]
    assert result.returncode != 0 and len(errors) == 1, result.stderr[-3000:]
    assert str(weights.relative_to(box.root)) in errors[0]
    assert "builtup fetch-weights timm mobilenetv2_050" in errors[0]
    assert not weights.exists() and not (box.root / target).exists()

    encoder = LWRefineNet.timm_encoder("mobilenetv2_050")
    weights.parent.mkdir(parents=True, exist_ok=True)
    torch.save(encoder.state_dict(), weights)
    Path(f"{weights}.sha256").write_text(f"{sha256_of(weights)}  {weights.name}\n")
    assert "fetch_weights" not in box.stale_jobs(target)
    with open(weights, "ab") as fh:  # damaged on its way to the cluster
        fh.write(b"\0")
    result = box.snakemake(target)
    assert result.returncode != 0
    assert f"ERROR: {weights.relative_to(box.root)}: sha256 differs" in result.stderr


def fold_data(tiny, spec=None):
    fold = tiny.root / "results/folds" / FOLD
    summary = json.loads((fold / "summary.json").read_text())
    spec = spec or load_experiment(tiny.root / "config/experiments/tiny.yaml")
    return TrainingData(
        spec, summary, fold / "tiles.tsv", stacks_under(tiny.root / "results/tiles"), 0
    )


def on_rank(data, rank, world_size):
    from types import SimpleNamespace

    data.trainer = SimpleNamespace(
        global_rank=rank,
        world_size=world_size,
        strategy=SimpleNamespace(root_device=torch.device("cpu")),
    )
    return data


def test_ddp_ranks_augment_with_streams_of_their_own(tiny):
    """Ranks start from one seed; each must still crop and flip its draws its own way."""
    crops = []
    for rank in (0, 1):
        data = on_rank(fold_data(tiny), rank, 2)
        data.train_dataloader()
        crops.append(data.train_set[0][0])
    assert not torch.equal(crops[0], crops[1])


def test_ddp_validation_scores_each_tile_once(tiny):
    shares = []
    for rank in range(4):
        data = on_rank(fold_data(tiny), rank, 4)
        shares.append(list(data.val_dataloader().sampler))
    everything = sorted(index for share in shares for index in share)
    assert everything == list(range(len(fold_data(tiny).val_set)))
    assert len(everything) % 4  # a remainder: padding would have repeated tiles


def test_cpu_training_pins_no_memory(tiny, monkeypatch):
    """Pinned memory opens a CUDA context: only for a model on the GPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    data = on_rank(fold_data(tiny), 0, 1)
    assert data.train_dataloader().pin_memory is False


def test_a_scene_model_is_not_retrained_when_only_the_stacks_change(tiny, tmp_path):
    from builtup.core.bands import STACK
    from builtup.train.loop import data_identity

    fold = tiny.root / "results/folds" / FOLD
    summary = json.loads((fold / "summary.json").read_text())
    spec = load_experiment(tiny.root / "config/experiments/tiny.yaml")
    tiles = pd.read_csv(fold / "tiles.tsv", sep="\t")
    assert (tiles["scene"] == STACK).any()
    changed = tiles.copy()
    changed.loc[changed["scene"] == STACK, "target_ratio"] += 0.01
    changed.to_csv(tmp_path / "tiles.tsv", sep="\t", index=False)
    tiles.to_csv(tmp_path / "same.tsv", sep="\t", index=False)
    scene_model = data_identity(spec, summary, tmp_path / "same.tsv")
    assert data_identity(spec, summary, tmp_path / "tiles.tsv") == scene_model
    stack_spec = replace(spec, recipe="stack_mean_std")
    assert data_identity(stack_spec, summary, tmp_path / "tiles.tsv") != data_identity(
        stack_spec, summary, tmp_path / "same.tsv"
    )


def test_a_second_stage_starts_from_the_first_and_keeps_its_lowest_validation_loss(tiny, tmp_path):
    """``start_from``: a DAG dependency on the first experiment's model of the same fold,
    every weight read from it; ``checkpoint: lowest_val_loss`` delivers the epoch whose
    held-out loss was lowest, not the last."""
    from builtup.train.loop import start_task

    box = Sandbox.copy(tiny, tmp_path / "box")
    second = {**TINY, "start_from": "tiny", "epochs": 3, "checkpoint": "lowest_val_loss"}
    second["optimizer"] = {"name": "adamw", "lr": 0.05}  # a lively held-out loss
    (box.root / "config/experiments/second.yaml").write_text(yaml.safe_dump(second))
    box.config["experiments"] = ["second"]
    box.write_config()
    result = box.snakemake(f"results/models/second/{FOLD}/model.ckpt")
    assert result.returncode == 0, result.stderr[-3000:]
    first = box.root / f"results/models/tiny/{FOLD}/model.ckpt"
    assert first.is_file()  # built as the dependency it is
    folder = box.root / f"results/models/second/{FOLD}"
    delivered = torch.load(folder / "model.ckpt", map_location="cpu", weights_only=False)
    assert delivered["hyper_parameters"]["data"]["start_sha256"] == sha256_of(first)
    table = epochs_table(folder)
    assert len(table) == 3
    assert delivered["epoch"] == table.loc[table["val/loss"].idxmin(), "epoch"]
    log = (box.root / f"results/logs/train/second/{FOLD}.log").read_text()
    assert f"network weights from results/models/tiny/{FOLD}/model.ckpt" in log
    assert "model: epoch of lowest val/loss" in log

    experiment = load_experiment(box.root / "config/experiments/second.yaml")
    task = start_task(experiment, {}, None, first)
    started = task.model.state_dict()
    trained = torch.load(first, map_location="cpu", weights_only=False)["state_dict"]
    assert all(torch.equal(started[k], trained[f"model.{k}"]) for k in started)

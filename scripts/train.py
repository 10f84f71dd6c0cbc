from pathlib import Path

from builtup.config.experiment import load_experiment
from builtup.runtime.job import run
from builtup.train.data import scene_stacks
from builtup.train.loop import train


def main(inputs, outputs, params):
    spec = load_experiment(inputs.experiment)
    if inputs.weights:  # the fetched ImageNet weights or the experiment's own file
        spec["model"]["encoder_weights"] = str(inputs.weights[0])
    train(
        spec,
        inputs.summary,
        inputs.tiles,
        scene_stacks(inputs.images, inputs.masks),
        Path(outputs.model).parent,
        workers=params.workers,
        devices=params.devices,
        mlruns=params.mlruns,
    )


run(snakemake, main, uses_torch=True)

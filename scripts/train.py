from pathlib import Path

from builtup.runtime.job import run
from builtup.train.data import scene_stacks
from builtup.train.loop import train
from builtup.train.names import load_experiment


def main(inputs, outputs, params):
    train(
        load_experiment(inputs.experiment),
        inputs.summary,
        inputs.tiles,
        scene_stacks(inputs.images, inputs.masks),
        Path(outputs.model).parent,
        workers=params.workers,
        devices=params.devices,
        mlruns=params.mlruns,
        weights_file=inputs.weights[0] if inputs.weights else None,
        start_model=inputs.start[0] if inputs.start else None,
    )


run(snakemake, main, uses_torch=True)

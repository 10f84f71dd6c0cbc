from pathlib import Path

from builtup.data import scene_stacks
from builtup.experiment import load_experiment
from builtup.rule import run
from builtup.training import train


def main():
    i = snakemake.input
    train(
        load_experiment(i.experiment),
        i.summary,
        i.tiles,
        scene_stacks(i.images, i.masks),
        Path(snakemake.output.model).parent,
        workers=max(snakemake.threads - 1, 0),
        devices=snakemake.resources.get("gpu") or None,  # the GPUs it holds, if any
    )


run(snakemake, main)

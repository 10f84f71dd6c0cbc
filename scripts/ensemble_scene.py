from builtup.predict.aggregate import ensemble_scene
from builtup.runtime.job import run


def main(inputs, outputs, params):
    ensemble_scene(list(inputs), outputs[0])


run(snakemake, main)

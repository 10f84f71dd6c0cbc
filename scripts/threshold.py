from builtup.deliver.threshold import choose_threshold
from builtup.runtime.job import run


def main(inputs, outputs, params):
    choose_threshold(inputs.cities, inputs.masks, params.cities, params.mode, outputs[0])


run(snakemake, main)

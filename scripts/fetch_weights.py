from builtup.runtime.job import run
from builtup.train.weights import fetch_weights


def main(inputs, outputs, params):
    fetch_weights(params.library, params.encoder, outputs.weights)


run(snakemake, main, uses_torch=True)

from builtup.predict.aggregate import aggregate_city
from builtup.runtime.job import run


def main(inputs, outputs, params):
    aggregate_city(list(inputs), outputs[0], params.method, params.vote_threshold)


run(snakemake, main)

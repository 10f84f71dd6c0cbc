from builtup.deliver.aggregate import aggregate_city
from builtup.runtime.job import run


def main(inputs, outputs, params):
    # the members are predicted on the same scene grid: the city mean is their pixel mean
    aggregate_city(list(inputs), outputs[0], "mean")


run(snakemake, main)

from builtup.prepare.temporal import temporal_stack
from builtup.runtime.job import run


def main(inputs, outputs, params):
    temporal_stack(list(inputs), outputs[0])


run(snakemake, main)

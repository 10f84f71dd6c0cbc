from builtup.evaluate.baseline import write_baselines
from builtup.runtime.job import run


def main(inputs, outputs, params):
    write_baselines(params.scenes, params.cities, outputs.summary, outputs.cities)


run(snakemake, main)

from builtup.demo.generator import generate
from builtup.runtime.job import run


def main(inputs, outputs, params):
    generate(params.root, seed=params.seed, size=params.size, label_style=params.labels)


run(snakemake, main)

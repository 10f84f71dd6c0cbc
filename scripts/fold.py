from builtup.prepare.folds import build_fold, write_fold
from builtup.runtime.job import run


def main(inputs, outputs, params):
    tiles, summary = build_fold(params.fold, params.train_cities, inputs.tables, inputs.moments)
    write_fold(tiles, summary, outputs.tiles, outputs.summary)


run(snakemake, main)

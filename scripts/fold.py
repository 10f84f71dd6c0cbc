from builtup.folds import build_fold, write_fold
from builtup.rule import run


def main():
    tiles, summary = build_fold(
        snakemake.wildcards.fold,
        snakemake.params.train_cities,
        snakemake.input.tables,
        snakemake.input.moments,
    )
    write_fold(tiles, summary, snakemake.output.tiles, snakemake.output.summary)


run(snakemake, main)

from pathlib import Path

from builtup.rule import run
from builtup.stats import SkipRules, tile_statistics, write_statistics
from builtup.tiling import TileSet


def main():
    i, w, p = snakemake.input, snakemake.wildcards, snakemake.params
    tiles = TileSet(Path(i.images), Path(i.masks), Path(i.index))
    table, moments = tile_statistics(
        tiles, w.city, w.scene, SkipRules(**p.skip), tuple(p.recipes), snakemake.threads
    )
    write_statistics(table, moments, snakemake.output.table, snakemake.output.moments)


run(snakemake, main)

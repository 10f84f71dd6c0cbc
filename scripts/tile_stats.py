from pathlib import Path

from builtup.prepare.tile_stats import SkipRules, tile_statistics, write_statistics
from builtup.prepare.tiles import TileSet
from builtup.runtime.job import run


def main(inputs, outputs, params):
    tiles = TileSet(Path(inputs.images), Path(inputs.masks), Path(inputs.index))
    skip = SkipRules(**params.skip)
    table, moments = tile_statistics(
        tiles, params.city, params.scene, skip, tuple(params.recipes), params.threads
    )
    write_statistics(table, moments, outputs.table, outputs.moments)


run(snakemake, main)

from pathlib import Path

from builtup.prepare.tiles import TileSet, cut_tiles
from builtup.runtime.job import run


def main(inputs, outputs, params):
    tiles = TileSet(Path(outputs.images), Path(outputs.masks), Path(outputs.index))
    cut_tiles(inputs.scene, inputs.mask, tiles, params.size, params.min_overlap)


run(snakemake, main)

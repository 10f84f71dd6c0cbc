from pathlib import Path

from builtup.rule import run
from builtup.tiling import TileSet, cut_tiles

out = snakemake.output
run(
    snakemake,
    lambda: cut_tiles(
        snakemake.input.scene,
        snakemake.input.mask,
        TileSet(Path(out.images), Path(out.masks), Path(out.index)),
        snakemake.params.size,
        snakemake.params.min_overlap,
    ),
)

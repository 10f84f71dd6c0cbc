from builtup.labels import rasterize_mask
from builtup.rule import run

run(
    snakemake,
    lambda: rasterize_mask(
        snakemake.input.scene,
        snakemake.input.labels,
        snakemake.output[0],
        all_touched=snakemake.params.all_touched,
    ),
)

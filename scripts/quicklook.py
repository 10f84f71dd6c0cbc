from builtup.figures import plot_quicklook
from builtup.rule import run

i = snakemake.input
run(
    snakemake,
    lambda: plot_quicklook(
        i.raster,
        i.prediction,
        i.threshold,
        snakemake.output[0],
        mask_path=i.get("mask"),
        metrics_path=i.get("metrics"),
    ),
)

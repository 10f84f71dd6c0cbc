from builtup.figures import plot_quicklook
from builtup.rule import run

i = snakemake.input
run(snakemake, lambda: plot_quicklook(i.raster, i.prediction, i.get("mask"), snakemake.output[0]))

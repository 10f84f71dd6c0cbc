from builtup.evaluate import choose_threshold
from builtup.rule import run

i = snakemake.input
run(
    snakemake,
    lambda: choose_threshold(i.cities, i.masks, snakemake.params.mode, snakemake.output[0]),
)

from builtup.aggregate import aggregate_city
from builtup.rule import run

# The members are predicted on the same scene grid: the city mean is their pixel mean.
run(snakemake, lambda: aggregate_city(snakemake.input, snakemake.output[0], "mean"))

from builtup.aggregate import aggregate_city
from builtup.rule import run

run(
    snakemake,
    lambda: aggregate_city(
        snakemake.input,
        snakemake.output[0],
        snakemake.params.method,
        snakemake.params.vote_threshold,
    ),
)

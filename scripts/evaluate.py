from builtup.evaluate import evaluate_experiment
from builtup.rule import run

i, o = snakemake.input, snakemake.output
run(
    snakemake,
    lambda: evaluate_experiment(
        snakemake.params.scenes,
        snakemake.params.cities,
        i.threshold,
        o.scenes,
        o.cities,
        o.summary,
    ),
)

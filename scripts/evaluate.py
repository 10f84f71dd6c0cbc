from builtup.evaluate import evaluate_experiment
from builtup.rule import run

i, o, p = snakemake.input, snakemake.output, snakemake.params
run(
    snakemake,
    lambda: evaluate_experiment(
        p.scenes,
        p.cities,
        i.threshold,
        i.baseline,
        o.scenes,
        o.cities,
        o.summary,
        all_touched=p.all_touched,
    ),
)

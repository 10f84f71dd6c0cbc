from builtup.evaluate.experiment import evaluate_experiment
from builtup.runtime.job import run


def main(inputs, outputs, params):
    evaluate_experiment(
        params.scenes,
        params.cities,
        inputs.threshold,
        inputs.baseline,
        outputs.scenes,
        outputs.cities,
        outputs.summary,
        all_touched=params.all_touched,
    )


run(snakemake, main)

from builtup.deliver.submission import write_submission
from builtup.runtime.job import run


def main(inputs, outputs, params):
    write_submission(inputs.city, inputs.threshold, outputs[0], params.min_area, params.simplify)


run(snakemake, main)

from builtup.deliver.leaderboard import write_leaderboard
from builtup.runtime.job import run


def main(inputs, outputs, params):
    summaries = dict(zip(params.names, inputs.summaries, strict=True))
    write_leaderboard(summaries, params.kinds, params.inputs, inputs.baseline, outputs[0])


run(snakemake, main)

from builtup.evaluate.leaderboard import write_leaderboard
from builtup.runtime.job import run


def main(inputs, outputs, params):
    metrics = dict(
        zip(params.names, zip(inputs.summaries, inputs.cities, strict=True), strict=True)
    )
    write_leaderboard(
        metrics,
        params.kinds,
        params.settings,
        inputs.baseline,
        outputs.leaderboard,
        params.cities,
        outputs.cities,
    )


run(snakemake, main)

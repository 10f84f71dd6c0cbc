from builtup.deliver.quicklook import plot_quicklook
from builtup.runtime.job import run


def main(inputs, outputs, params):
    plot_quicklook(
        inputs.raster,
        inputs.prediction,
        inputs.threshold,
        outputs[0],
        mask_path=inputs.get("mask"),
        metrics_path=inputs.get("metrics"),
    )


run(snakemake, main)

from builtup.prepare.masks import rasterize_mask
from builtup.runtime.job import run


def main(inputs, outputs, params):
    rasterize_mask(
        inputs.scene,
        inputs.labels,
        outputs[0],
        all_touched=params.all_touched,
        trained_on=params.trained_on,
    )


run(snakemake, main)

from builtup.prepare.compose import InputConvention, compose_three_band
from builtup.runtime.job import run


def main(inputs, outputs, params):
    compose_three_band(
        inputs.vv,
        inputs.vh,
        outputs[0],
        InputConvention(units=params.units, nodata=float(params.nodata)),
        vv_band=params.vv_band,
        vh_band=params.vh_band,
    )


run(snakemake, main)

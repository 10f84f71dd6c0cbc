from builtup.ingest import InputConvention, compose_three_band
from builtup.rule import run

p = snakemake.params
run(
    snakemake,
    lambda: compose_three_band(
        snakemake.input.vv,
        snakemake.input.vh,
        snakemake.output[0],
        InputConvention(units=p.units, nodata=float(p.nodata)),
        vv_band=p.vv_band,
        vh_band=p.vh_band,
    ),
)

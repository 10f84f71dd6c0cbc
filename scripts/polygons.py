from builtup.polygons import deliver_polygons
from builtup.rule import run

i, p = snakemake.input, snakemake.params
run(
    snakemake,
    lambda: deliver_polygons(i.city, i.threshold, snakemake.output[0], p.min_area, p.simplify),
)

from builtup.deliver.polygons import deliver_polygons
from builtup.runtime.job import run


def main(inputs, outputs, params):
    deliver_polygons(inputs.city, inputs.threshold, outputs[0], params.min_area, params.simplify)


run(snakemake, main)

from builtup.baseline import write_baselines
from builtup.rule import run

p, o = snakemake.params, snakemake.output
run(snakemake, lambda: write_baselines(p.scenes, p.cities, o.summary, o.cities))

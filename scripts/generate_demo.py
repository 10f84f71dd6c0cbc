from builtup import demo
from builtup.rule import run

p = snakemake.params
run(snakemake, lambda: demo.generate(p.root, seed=p.seed, size=p.size))

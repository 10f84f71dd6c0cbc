"""Built-up area mapping from Sentinel-1 VV/VH backscatter.

The library behind the Snakemake workflow, one folder per stage of the DAG: each rule's
entry script in ``scripts/`` (named after the rule) maps the ``snakemake`` object onto
one call of the function of that name here.
"""

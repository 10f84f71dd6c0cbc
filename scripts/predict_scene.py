from builtup.predict import predict_with_folds
from builtup.rule import run

i, p = snakemake.input, snakemake.params
run(
    snakemake,
    lambda: predict_with_folds(
        i.raster,
        i.experiment,
        i.models,
        i.summaries,
        snakemake.output[0],
        window=p.window,
        overlap=p.overlap,
        batch_size=p.batch_size,
        device=p.device,
    ),
)

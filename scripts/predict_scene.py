from builtup.deliver.predict import predict_with_folds
from builtup.runtime.job import run


def main(inputs, outputs, params):
    predict_with_folds(
        inputs.raster,
        inputs.experiment,
        inputs.models,
        inputs.summaries,
        outputs[0],
        window=params.window,
        overlap=params.overlap,
        batch_size=params.batch_size,
        device=params.device,
        encoding=params.encoding,
    )


run(snakemake, main, uses_torch=True)

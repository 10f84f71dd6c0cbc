from builtup.config.experiment import PredictionSettings
from builtup.core.probability import ENCODINGS
from builtup.predict.scene import predict_scene
from builtup.runtime.job import run
from builtup.train.names import load_experiment


def main(inputs, outputs, params):
    predict_scene(
        inputs.raster,
        load_experiment(inputs.experiment),
        PredictionSettings(**params.prediction),
        inputs.models,
        inputs.summaries,
        outputs[0],
        ENCODINGS[params.encoding],
    )


run(snakemake, main, uses_torch=True)

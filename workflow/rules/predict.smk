rule predict_scene:
    input:
        raster=scene_raster,
        experiment="config/experiments/{experiment}.yaml",
        models=fold_models,
        summaries=fold_summaries,
    output:
        "results/predictions/{experiment}/{city}/{scene}.tif",
    log:
        "results/logs/predict_scene/{experiment}/{city}/{scene}.log",
    benchmark:
        "results/benchmarks/predict_scene/{experiment}/{city}/{scene}.tsv"
    wildcard_constraints:
        experiment=_alternatives(EXPERIMENTS),
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        gpu=lambda wildcards: min(experiment_gpus(wildcards), 1),
        mem_mb=4000,
        runtime=60,
    params:
        prediction=prediction_settings,
        encoding=prediction_encoding,
    script:
        "../../scripts/predict_scene.py"


rule ensemble_scene:
    input:
        ensemble_members,
    output:
        "results/predictions/{experiment}/{city}/{scene}.tif",
    log:
        "results/logs/ensemble_scene/{experiment}/{city}/{scene}.log",
    benchmark:
        "results/benchmarks/ensemble_scene/{experiment}/{city}/{scene}.tsv"
    wildcard_constraints:
        experiment=_alternatives(ENSEMBLES),
    conda:
        "../../envs/geo.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../../scripts/ensemble_scene.py"


rule aggregate_city:
    input:
        city_predictions,
    output:
        "results/cities/{experiment}/{city}.tif",
    log:
        "results/logs/aggregate_city/{experiment}/{city}.log",
    benchmark:
        "results/benchmarks/aggregate_city/{experiment}/{city}.tsv"
    conda:
        "../../envs/geo.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        method=delivery_setting("aggregation"),
        vote_threshold=delivery_setting("vote_threshold"),
    script:
        "../../scripts/aggregate_city.py"

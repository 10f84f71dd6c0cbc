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
        window=config["prediction"]["window"],
        overlap=config["prediction"]["overlap"],
        batch_size=config["prediction"]["batch_size"],
        device=config["prediction"]["device"],
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
        vote_threshold=config["delivery"]["vote_threshold"],
    script:
        "../../scripts/aggregate_city.py"


rule threshold:
    input:
        cities=expand("results/cities/{{experiment}}/{city}.tif", city=TRAIN_CITIES),
        masks=[reference_mask(city) for city in TRAIN_CITIES],
    output:
        "results/thresholds/{experiment}.json",
    log:
        "results/logs/threshold/{experiment}.log",
    benchmark:
        "results/benchmarks/threshold/{experiment}.tsv"
    conda:
        "../../envs/geo.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=20,
    params:
        mode=delivery_setting("threshold"),
        cities=TRAIN_CITIES,
    script:
        "../../scripts/threshold.py"


rule polygons:
    input:
        city="results/cities/{experiment}/{city}.tif",
        threshold="results/thresholds/{experiment}.json",
    output:
        multiext("results/submission/{experiment}/{city}", *submission_extensions()),
    log:
        "results/logs/polygons/{experiment}/{city}.log",
    benchmark:
        "results/benchmarks/polygons/{experiment}/{city}.tsv"
    conda:
        "../../envs/geo.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        min_area=config["delivery"]["min_area"],
        simplify=config["delivery"]["simplify"],
    script:
        "../../scripts/polygons.py"


rule baseline:
    input:
        rasters=labelled_scene_files("results/rasters/{city}/{scene}.tif"),
        stacks=expand("results/stacks/{city}.tif", city=LABELLED_CITIES),
        masks=labelled_evaluation_masks(),
    output:
        summary="results/baseline/summary.json",
        cities=report(
            "results/baseline/cities.tsv",
            caption="../report/baseline.rst",
            category="Metrics",
            labels={"experiment": "baseline", "table": "per city"},
        ),
    log:
        "results/logs/baseline.log",
    benchmark:
        "results/benchmarks/baseline.tsv"
    conda:
        "../../envs/geo.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        scenes=baseline_scenes(),
        cities=baseline_cities(),
    script:
        "../../scripts/baseline.py"


rule evaluate:
    input:
        predictions=evaluated_predictions,
        masks=evaluated_masks,
        cities=expand("results/cities/{{experiment}}/{city}.tif", city=LABELLED_CITIES),
        threshold="results/thresholds/{experiment}.json",
        baseline="results/baseline/summary.json",
    output:
        scenes=report(
            "results/metrics/{experiment}/scenes.tsv",
            caption="../report/metrics.rst",
            category="Metrics",
            labels={"experiment": "{experiment}", "table": "per scene"},
        ),
        cities=report(
            "results/metrics/{experiment}/cities.tsv",
            caption="../report/metrics.rst",
            category="Metrics",
            labels={"experiment": "{experiment}", "table": "per city"},
        ),
        summary="results/metrics/{experiment}/summary.json",
    log:
        "results/logs/evaluate/{experiment}.log",
    benchmark:
        "results/benchmarks/evaluate/{experiment}.tsv"
    conda:
        "../../envs/geo.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        scenes=evaluation_scenes,
        cities=evaluation_cities,
        all_touched=config["evaluation"]["all_touched"],
    script:
        "../../scripts/evaluate.py"


rule leaderboard:
    input:
        summaries=delivered_summaries(),
        cities=[f"results/metrics/{name}/cities.tsv" for name in delivered_names()],
        baseline="results/baseline/summary.json",
    output:
        report(
            "results/metrics/leaderboard.tsv",
            caption="../report/leaderboard.rst",
            category="Metrics",
            labels={"experiment": "all", "table": "leaderboard"},
        ),
    log:
        "results/logs/leaderboard.log",
    benchmark:
        "results/benchmarks/leaderboard.tsv"
    conda:
        "../../envs/geo.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=10,
    params:
        names=delivered_names(),
        kinds=delivered_kinds(),
        settings=leaderboard_settings(),
    script:
        "../../scripts/leaderboard.py"


rule quicklook:
    input:
        unpack(quicklook_inputs),
    output:
        report(
            "results/quicklooks/{experiment}/{city}/{scene}.png",
            caption="../report/quicklook.rst",
            category="Quicklooks",
            subcategory="{experiment}",
            labels={
                "experiment": "{experiment}",
                "city": "{city}",
                "scene": "{scene}",
            },
        ),
    log:
        "results/logs/quicklook/{experiment}/{city}/{scene}.log",
    benchmark:
        "results/benchmarks/quicklook/{experiment}/{city}/{scene}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../../scripts/quicklook.py"

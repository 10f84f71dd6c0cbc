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
            "results/evaluation/{experiment}/scenes.tsv",
            caption="../report/metrics.rst",
            category="Metrics",
            labels={"experiment": "{experiment}", "table": "per scene"},
        ),
        cities=report(
            "results/evaluation/{experiment}/cities.tsv",
            caption="../report/metrics.rst",
            category="Metrics",
            labels={"experiment": "{experiment}", "table": "per city"},
        ),
        summary="results/evaluation/{experiment}/summary.json",
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
        cities=[f"results/evaluation/{name}/cities.tsv" for name in delivered_names()],
        baseline="results/baseline/summary.json",
    output:
        leaderboard=report(
            "results/evaluation/leaderboard.tsv",
            caption="../report/leaderboard.rst",
            category="Metrics",
            labels={"experiment": "all", "table": "leaderboard"},
        ),
        cities=report(
            "results/evaluation/cities.tsv",
            caption="../report/cities.rst",
            category="Metrics",
            labels={"experiment": "all", "table": "F1 per city"},
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
        cities=labelled_city_facts(),
    script:
        "../../scripts/leaderboard.py"

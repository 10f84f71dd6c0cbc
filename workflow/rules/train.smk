rule train:
    input:
        experiment="config/experiments/{experiment}.yaml",
        summary="results/folds/{fold}/summary.json",
        tiles="results/folds/{fold}/tiles.tsv",
        images=experiment_tiles("images"),
        masks=experiment_tiles("masks"),
        weights=experiment_weights,
        start=start_model,
    output:
        model="results/models/{experiment}/{fold}/model.ckpt",
        metrics="results/models/{experiment}/{fold}/metrics.csv",
        curves=report(
            "results/models/{experiment}/{fold}/curves.png",
            caption="../report/curves.rst",
            category="Training",
            subcategory="{experiment}",
            labels={
                "experiment": "{experiment}",
                "fold": "{fold}",
                "figure": "curves",
            },
        ),
        samples=report(
            "results/models/{experiment}/{fold}/samples.png",
            caption="../report/samples.rst",
            category="Training",
            subcategory="{experiment}",
            labels={
                "experiment": "{experiment}",
                "fold": "{fold}",
                "figure": "samples",
            },
        ),
    log:
        "results/logs/train/{experiment}/{fold}.log",
    benchmark:
        "results/benchmarks/train/{experiment}/{fold}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: config["training"]["threads"]
    resources:
        gpu=experiment_gpus,
        mem_mb=config["training"]["mem_mb"],
        runtime=config["training"]["runtime"],
    params:
        workers=lambda wildcards, threads: max(threads - 1, 0),
        devices=lambda wildcards, resources: resources.gpu or None,  # the GPUs it holds
        mlruns="results/mlruns",
    script:
        "../../scripts/train.py"


# Runs where Snakemake runs (the login node of a cluster), so that training jobs on offline
# GPU nodes only read the file.
rule fetch_weights:
    output:
        weights="resources/weights/{library}-{encoder}-imagenet.pth",
        checksum="resources/weights/{library}-{encoder}-imagenet.pth.sha256",
    log:
        "results/logs/fetch_weights/{library}-{encoder}.log",
    benchmark:
        "results/benchmarks/fetch_weights/{library}-{encoder}.tsv"
    localrule: True
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        library=lambda wildcards: wildcards.library,
        encoder=lambda wildcards: wildcards.encoder,
    script:
        "../../scripts/fetch_weights.py"

rule compose_raster:
    input:
        unpack(raw_inputs),
    output:
        "results/rasters/{city}/{scene}.tif",
    log:
        "results/logs/compose_raster/{city}/{scene}.log",
    benchmark:
        "results/benchmarks/compose_raster/{city}/{scene}.tsv"
    conda:
        "../../envs/geo.yaml"
    threads: config["preparation"]["threads"]
    resources:
        mem_mb=1000,
        runtime=20,
    params:
        units=config["input"]["units"],
        nodata=config["input"]["nodata"],
        vv_band=band_of("vv"),
        vh_band=band_of("vh"),
    script:
        "../../scripts/compose_raster.py"


rule rasterize_mask:
    input:
        scene=scene_raster,
        labels=labels_of,
        sidecars=label_sidecars,
    output:
        "results/{masks}/{city}/{scene}.tif",
    log:
        "results/logs/rasterize_mask/{masks}/{city}/{scene}.log",
    benchmark:
        "results/benchmarks/rasterize_mask/{masks}/{city}/{scene}.tsv"
    conda:
        "../../envs/geo.yaml"
    threads: config["preparation"]["threads"]
    resources:
        mem_mb=1000,
        runtime=20,
    params:
        all_touched=mask_all_touched,
        trained_on=mask_trained_on,
    script:
        "../../scripts/rasterize_mask.py"


rule temporal_stack:
    input:
        city_rasters,
    output:
        "results/stacks/{city}.tif",
    log:
        "results/logs/temporal_stack/{city}.log",
    benchmark:
        "results/benchmarks/temporal_stack/{city}.tsv"
    conda:
        "../../envs/geo.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../../scripts/temporal_stack.py"


rule cut_tiles:
    input:
        scene=scene_raster,
        mask="results/masks/{city}/{scene}.tif",
    output:
        images="results/tiles/{city}/{scene}/images.npy",
        masks="results/tiles/{city}/{scene}/masks.npy",
        index="results/tiles/{city}/{scene}/tiles.json",
    log:
        "results/logs/cut_tiles/{city}/{scene}.log",
    benchmark:
        "results/benchmarks/cut_tiles/{city}/{scene}.tsv"
    conda:
        "../../envs/geo.yaml"
    threads: config["preparation"]["threads"]
    resources:
        mem_mb=1000,
        runtime=20,
    params:
        size=config["tiles"]["size"],
        min_overlap=config["tiles"]["min_overlap"],
    script:
        "../../scripts/cut_tiles.py"


rule tile_stats:
    input:
        images="results/tiles/{city}/{scene}/images.npy",
        masks="results/tiles/{city}/{scene}/masks.npy",
        index="results/tiles/{city}/{scene}/tiles.json",
    output:
        table="results/tiles/{city}/{scene}/stats.tsv",
        moments="results/tiles/{city}/{scene}/moments.json",
    log:
        "results/logs/tile_stats/{city}/{scene}.log",
    benchmark:
        "results/benchmarks/tile_stats/{city}/{scene}.tsv"
    conda:
        "../../envs/geo.yaml"
    threads: config["preparation"]["threads"]
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        city=lambda wildcards: wildcards.city,
        scene=lambda wildcards: wildcards.scene,
        threads=lambda wildcards, threads: threads,
        skip=config["tiles"]["skip"],
        recipes=config["recipes"],
    script:
        "../../scripts/tile_stats.py"


rule fold:
    input:
        tables=training_scene_files("results/tiles/{city}/{scene}/stats.tsv"),
        moments=training_scene_files("results/tiles/{city}/{scene}/moments.json"),
    output:
        tiles="results/folds/{fold}/tiles.tsv",
        summary="results/folds/{fold}/summary.json",
    log:
        "results/logs/fold/{fold}.log",
    benchmark:
        "results/benchmarks/fold/{fold}.tsv"
    conda:
        "../../envs/geo.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=10,
    params:
        fold=lambda wildcards: wildcards.fold,
        train_cities=TRAIN_CITIES,
    script:
        "../../scripts/fold.py"

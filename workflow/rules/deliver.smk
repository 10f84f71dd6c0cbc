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


rule submission:
    input:
        city="results/cities/{experiment}/{city}.tif",
        threshold="results/thresholds/{experiment}.json",
    output:
        multiext("results/submission/{experiment}/{city}", *submission_extensions()),
    log:
        "results/logs/submission/{experiment}/{city}.log",
    benchmark:
        "results/benchmarks/submission/{experiment}/{city}.tsv"
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
        "../../scripts/submission.py"


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

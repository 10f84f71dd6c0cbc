if config["demo"]["enabled"]:

    rule generate_demo:
        output:
            demo_outputs(),
        log:
            "results/logs/generate_demo.log",
        benchmark:
            "results/benchmarks/generate_demo.tsv"
        conda:
            "../../envs/geo.yaml"
        resources:
            mem_mb=2000,
            runtime=30,
        params:
            root=demo_root,
            seed=config["demo"]["seed"],
            size=config["demo"]["size"],
            labels=config["demo"]["labels"],
        script:
            "../../scripts/generate_demo.py"

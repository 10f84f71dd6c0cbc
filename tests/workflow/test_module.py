"""The workflow used as a Snakemake module from another project directory, with that
project's own config and scenes sheet, the way snakedeploy writes the project's Snakefile."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from builtup.config.sheet import read_sheet

from conftest import REPO

pytestmark = pytest.mark.slow

PROJECT_SNAKEFILE = """\
configfile: "config/config.yaml"


module builtup:
    snakefile:
        "{source}/workflow/Snakefile"
    config:
        config


use rule * from builtup as builtup_*
"""


def deployed_source(folder: Path) -> Path:
    """The repository's tracked files, as a tag of it checked out elsewhere has them."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        target = folder / name.decode()
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name.decode()).is_symlink():
            target.symlink_to((REPO / name.decode()).readlink())
        elif (REPO / name.decode()).is_file():
            shutil.copyfile(REPO / name.decode(), target)
    return folder


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project of its own: its Snakefile uses the deployed workflow as a module; its config
    names one city of its own sheet; nothing of the workflow's repository is in it."""
    source = deployed_source(tmp_path_factory.mktemp("source"))
    root = tmp_path_factory.mktemp("project")
    (root / "workflow").mkdir()
    (root / "workflow/Snakefile").write_text(PROJECT_SNAKEFILE.format(source=source))
    (root / "config/experiments").mkdir(parents=True)
    shutil.copyfile(source / "config/experiments/demo.yaml", root / "config/experiments/demo.yaml")
    config = yaml.safe_load((source / "config/config.yaml").read_text())
    config.update(cities=["38SLF_Mosul"], experiments=["demo"], scenes="config/sheet.tsv")
    config["labels"] = {"38SLF_Mosul": config["labels"]["38SLF_Mosul"]}
    config["demo"]["size"] = 256
    (root / "config/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    sheet = read_sheet(source / "config/scenes.tsv")
    sheet[sheet["city"] == "38SLF_Mosul"].to_csv(root / "config/sheet.tsv", sep="\t", index=False)
    return source, root


def run_snakemake(root: Path, *args) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("snakemake")
    return subprocess.run(
        [str(exe), "--cores", "2", *args], cwd=root, capture_output=True, text=True, timeout=900
    )


def test_a_project_runs_the_workflow_as_a_module_with_its_own_config(project):
    source, root = project
    first = read_sheet(root / "config/sheet.tsv").iloc[0]
    raster = f"results/rasters/{first['city']}/{first['scene']}.tif"
    result = run_snakemake(root, raster)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"builtup library: {source / 'scripts/builtup'}" in result.stderr
    assert (root / raster).stat().st_size > 0
    assert (root / "resources/demo").is_dir()  # the generator ran in the project
    assert not (source / "results").exists() and not (source / "resources").exists()
    plan = run_snakemake(root, "-n")
    assert plan.returncode == 0, plan.stderr[-3000:]
    text = plan.stdout + plan.stderr
    # the project's one city, one fold, one experiment: the whole DAG, rules prefixed
    assert "builtup_train" in text and "builtup_leaderboard" in text
    assert "38SNE_Souleimaniye" not in text

"""docs/replicas.md against the experiment files: every ``key: value`` the tables give as
ours must be what the file (read as the workflow reads it) sets."""

import math
import re
from pathlib import Path

import pytest
import yaml

from builtup.config.experiment import read_experiment

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs/replicas.md"
OTHER_CONFIGS = "Configs not in the results table"
SNIPPET = re.compile(r"`([a-z_]+(?:\.[a-z_0-9]+)*): ([^`]+)`")


def experiment_tables() -> dict[str, list[str]]:
    """The "ours" cells of the table of each section headed by an experiment's name."""
    tables = {}
    for section in DOC.read_text().split("\n## ")[1:]:
        heading = re.match(r"`([a-z0-9_]+)`", section)
        rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| ")]
        if heading is not None:
            tables[heading.group(1)] = [row[2] for row in rows[2:]]
        elif section.startswith(OTHER_CONFIGS):  # a row per experiment, named in its first cell
            for row in rows[2:]:
                tables[row[0].strip("| `")] = [row[2]]
    return tables


def claims(cells: list[str]) -> list[tuple[str, object]]:
    return [
        (path, yaml.safe_load(value)) for cell in cells for path, value in SNIPPET.findall(cell)
    ]


def value_at(settings, path: str):
    for key in path.split("."):
        settings = settings[int(key)] if isinstance(settings, list) else settings[key]
    return settings


def agrees(claimed, actual) -> bool:
    """A mapping claims only the keys it names; lists and values must match exactly."""
    if isinstance(claimed, dict):
        return isinstance(actual, dict) and all(
            k in actual and agrees(v, actual[k]) for k, v in claimed.items()
        )
    if isinstance(claimed, list):
        return (
            isinstance(actual, list | tuple)
            and len(claimed) == len(actual)
            and all(agrees(c, a) for c, a in zip(claimed, actual, strict=True))
        )
    if isinstance(claimed, float) or isinstance(actual, float):
        return isinstance(actual, int | float) and math.isclose(claimed, actual)
    return claimed == actual


TABLES = experiment_tables()


def test_every_replica_section_is_read():
    assert {
        "fpn_se_resnext50_db",
        "unet_resnet50",
        "lwrefinenet",
        "lwrefinenet_jaccard",
        "deeplabv3_resnet101",
        "unet_vgg11_2nd_place",
        "unet_vgg11_2nd_place_one_stage",
        "fpn_se_resnext50_db_lr_restart",
        "lwrefinenet_db5",
        "pspnet_resnet50",
    } <= set(TABLES)
    assert all(len(claims(cells)) >= 4 for cells in TABLES.values())


@pytest.mark.parametrize("name", sorted(TABLES))
def test_the_table_says_what_the_experiment_file_sets(name):
    settings = read_experiment(REPO / f"config/experiments/{name}.yaml").to_dict()
    settings["augmentation"] = {"train": settings["augmentation"]}  # as the file nests it
    wrong = [
        f"{path}: the table says {claimed!r}, the file has {value_at(settings, path)!r}"
        for path, claimed in claims(TABLES[name])
        if not agrees(claimed, value_at(settings, path))
    ]
    assert not wrong, "\n".join(wrong)


def test_a_table_that_differs_from_its_file_is_caught():
    cells = ["`optimizer: {name: adam, lr: 2.0e-3}`", "`epochs: 50`"]
    settings = {"optimizer": {"name": "adam", "lr": 1e-3, "weight_decay": 0.0}, "epochs": 50}
    verdicts = [agrees(v, value_at(settings, p)) for p, v in claims(cells)]
    assert verdicts == [False, True]

"""The workflow's config file: read strictly, checked against its schema and against the
relations between settings that a schema cannot state."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from builtup.config.schema import check_against_schema
from builtup.config.yamlfile import read_yaml
from builtup.core.errors import InputError


def check_config_files(paths: Iterable[str | Path]) -> None:
    """Each config file that exists is UTF-8 YAML of a mapping, with no key given twice
    (Snakemake would keep the last silently)."""
    for path in paths:
        if not Path(path).is_file():
            continue
        data = read_yaml(path, "config file")
        if not isinstance(data, dict):
            raise InputError(path, "a config file is a mapping of settings (cities: [...], ...)")


def check_config(config: dict, source: str) -> dict:
    """``config`` with the schema's defaults filled in; InputError on the first fault."""
    check_against_schema(config, "config.schema.yaml", source)
    check_less(config["tiles"], "min_overlap", "size", "tiles", source)
    check_less(config["prediction"], "overlap", "window", "prediction", source)
    return config


def check_less(section: Mapping, smaller: str, larger: str, name: str, source) -> None:
    """An overlap of neighbouring windows (tiles) is less than the window (tile) itself."""
    if section[smaller] is not None and section[smaller] >= section[larger]:
        raise InputError(
            source,
            f"{name}.{smaller} ({section[smaller]} px) must be less than {name}.{larger} "
            f"({section[larger]} px)",
        )

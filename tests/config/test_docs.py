"""Every key the config and experiment schemas accept is documented in config/README.md
(itself, or as part of a documented parent such as ``optimizer``)."""

import re

import pytest
import yaml

from conftest import REPO

SCHEMAS = ("config.schema.yaml", "experiment.schema.yaml")


def leaf_keys(schema: dict, prefix: str = "") -> list[str]:
    """Dotted paths of the schema's keys; an object with named properties is walked into."""
    keys = []
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        if sub.get("type") == "object" and "properties" in sub:
            keys.extend(leaf_keys(sub, f"{path}."))
        else:
            keys.append(path)
    return keys


def documented_keys(text: str) -> set[str]:
    """Keys named in the first cell of the README's tables; `a.b` / `c` names a.b and a.c."""
    keys = set()
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        names = re.findall(r"`([^`]+)`", line.split(" | ")[0])
        parent = names[0].rpartition(".")[0]
        keys.update(names[0:1] + [n if "." in n or not parent else f"{parent}.{n}" for n in names])
    return keys


@pytest.mark.parametrize("schema", SCHEMAS)
def test_every_schema_key_is_documented(schema):
    keys = leaf_keys(yaml.safe_load((REPO / "workflow/schemas" / schema).read_text()))
    documented = documented_keys((REPO / "config/README.md").read_text())
    assert len(keys) > 10
    assert [key for key in keys if not is_documented(key, documented)] == []


def is_documented(key: str, documented: set[str]) -> bool:
    parts = key.split(".")
    return any(".".join(parts[:n]) in documented for n in range(1, len(parts) + 1))


def test_documented_keys_reads_shared_rows():
    rows = "| `sampler.with_target` / `without_target` | 0.5 | x |\n| `seed` | 12 | y |"
    assert documented_keys(rows) == {"sampler.with_target", "sampler.without_target", "seed"}

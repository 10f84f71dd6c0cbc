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


def schema_defaults(schema: dict, prefix: str = "") -> dict:
    """Dotted keys of the schema with the default each declares."""
    defaults = {}
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        if "default" in sub:
            defaults[path] = sub["default"]
        if sub.get("type") == "object" and "properties" in sub:
            defaults.update(schema_defaults(sub, f"{path}."))
    return defaults


def readme_defaults(sections: list[str]) -> dict:
    """The default column of the README's key tables in ``sections``, read as YAML where
    it is one literal in backticks."""
    defaults = {}
    for section in sections:
        for line in section.splitlines():
            cells = line.split(" | ")
            if not line.startswith("| `") or len(cells) < 3:
                continue
            literal = re.fullmatch(r"`([^`]*)`", cells[1].strip())
            if literal is None:
                continue
            for name in re.findall(r"`([^`]+)`", cells[0]):
                defaults[name] = yaml.safe_load(literal.group(1))
    return defaults


def readme_sections() -> dict[str, list[str]]:
    """The README's sections by the schema whose keys they document."""
    text = (REPO / "config/README.md").read_text()
    parts = re.split(r"^## ", text, flags=re.M)
    experiment = [p for p in parts if p.startswith("Experiments")]
    return {
        "config.schema.yaml": [p for p in parts if p not in experiment],
        "experiment.schema.yaml": experiment,
    }


@pytest.mark.parametrize("schema", SCHEMAS)
def test_the_readme_states_the_schema_defaults(schema):
    defaults = schema_defaults(yaml.safe_load((REPO / "workflow/schemas" / schema).read_text()))
    stated = readme_defaults(readme_sections()[schema])
    checked = {key for key in stated if key in defaults}
    assert len(checked) > 10
    for key in sorted(checked):
        assert stated[key] == defaults[key], f"config/README.md says {key}: {stated[key]!r}"


def test_every_recipe_is_named_alike_in_code_schemas_config_and_readme():
    from builtup.core.recipes import RECIPES

    names = list(RECIPES)
    experiment = yaml.safe_load((REPO / "workflow/schemas/experiment.schema.yaml").read_text())
    config = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    assert experiment["properties"]["recipe"]["enum"] == names
    assert config["properties"]["recipes"]["items"]["enum"] == names
    assert config["properties"]["recipes"]["default"] == names
    assert yaml.safe_load((REPO / "config/config.yaml").read_text())["recipes"] == names
    section = (REPO / "config/README.md").read_text().split("## Input recipes")[1]
    table = dict(re.findall(r"^\| `(\w+)` \| (\d+) \|", section.split("\n## ")[0], re.M))
    assert table == {name: str(recipe.channels) for name, recipe in RECIPES.items()}

"""JSON-schema checks that fill in defaults and report the first fault on one line."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import yaml

from builtup.core.errors import InputError

# package data: a link to workflow/schemas in the repository, the files themselves in a wheel
SCHEMAS = Path(__file__).resolve().parent / "schemas"


def _with_defaults(validator_class):
    """A validator that also fills the schema's defaults into the instance."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def fill(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = sub["default"]
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": fill})


def section_defaults(schema_name: str, key: str) -> dict:
    """The defaults of a section of a schema (a section left out of the data)."""
    schema = yaml.safe_load((SCHEMAS / schema_name).read_text())
    section: dict = {}
    _with_defaults(jsonschema.Draft202012Validator)(schema["properties"][key]).validate(section)
    return section


def check_against_schema(data: dict, schema_name: str, source: str | Path) -> dict:
    """``data`` with the defaults of ``SCHEMAS/schema_name`` filled in; InputError naming
    ``source`` and the key at fault on the first violation."""
    schema = yaml.safe_load((SCHEMAS / schema_name).read_text())
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise InputError(source, f"{where}: {error.message}")
    return data

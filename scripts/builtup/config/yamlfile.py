"""YAML files read strictly: UTF-8 text, plain data only, no key given twice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from builtup.core.errors import InputError


class _StrictLoader(yaml.SafeLoader):
    """The safe loader, refusing a mapping that gives a key twice (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.MarkedYAMLError(
                    problem=f"key {key!r} given twice (lines {seen[key]} and "
                    f"{key_node.start_mark.line + 1})",
                    problem_mark=key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def text_of(path: str | Path, what: str) -> str:
    """The UTF-8 text of a user's file; InputError naming it when it is missing or not text."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"{what} does not exist")
    data = path.read_bytes()
    if b"\0" in data:
        raise InputError(path, f"{what} is a binary file, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise InputError(path, f"{what} is not UTF-8 text (line {line})") from None


def read_yaml(path: str | Path, what: str) -> Any:
    """The plain data of a YAML file; InputError naming the file and the line at fault."""
    text = text_of(path, what)
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}: " if mark else ""
        problem = err.problem or err.context or "unreadable"
        raise InputError(path, f"{what} is not valid YAML: {where}{problem}") from None
    except yaml.YAMLError as err:
        raise InputError(path, f"{what} is not valid YAML: {err}") from None

"""The one exception the workflow reports as a single line naming the file and the fault."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad input. ``str(err)`` is ``"<path>: <fault>"``, one line, for the rule's log."""

    def __init__(self, path: str | Path, fault: str):
        self.path = str(path)
        self.fault = fault
        super().__init__(f"{self.path}: {fault}")

"""The one exception the workflow reports as a single line naming the file and the fault."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad input. ``str(err)`` is ``"<path>: <fault>"``, one line, for the rule's log."""

    def __init__(self, path: str | Path, fault: str):
        self.path = str(path)
        self.fault = fault
        super().__init__(f"{self.path}: {fault}")


def one_line(err: BaseException) -> str:
    """An exception's message as one line: the first of torch's many, or each fault of a
    pydantic report (which albumentations re-raises from it) joined."""
    cause = err.__cause__
    if callable(getattr(cause, "errors", None)):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in cause.errors())
    message = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__

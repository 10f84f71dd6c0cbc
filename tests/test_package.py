"""The library's shape: stage subpackages without import cycles, knowing no rule and no
repository path."""

import ast
import re
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "scripts" / "builtup"
# The library's folders from the bottom up: a module imports its own folder and those of
# lower layers only (the command line, above them all, may import any).
LAYERS = [
    {"core"},
    {"config", "runtime", "figures"},
    {"demo", "prepare"},
    {"train"},
    {"predict"},
    {"deliver"},
    {"evaluate"},
]
STAGES = set().union(*LAYERS)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(path: Path) -> set[str]:
    """Library modules ``path`` imports anywhere (top level and inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("builtup"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("builtup")}
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_library_is_grouped_by_stage():
    top = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("_")}
    assert top == STAGES
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert loose == ["__init__.py", "cli.py"]


def layer_of(module: str) -> int:
    folder = module.split(".")[1]
    return next(i for i, layer in enumerate(LAYERS) if folder in layer)


@pytest.mark.parametrize(
    "name", [n for n in MODULES if n.count(".") > 1], ids=lambda n: n.removeprefix("builtup.")
)
def test_imports_run_down_the_layers(name):
    folder, layer = name.split(".")[1], layer_of(name)
    for imported in imported_modules(MODULES[name]):
        if imported.count(".") < 2 or imported.split(".")[1] == folder:
            continue
        assert layer_of(imported) < layer, f"{name} imports {imported}, a layer up or beside"


def test_no_import_cycle():
    graph = {name: imported_modules(path) for name, path in MODULES.items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_core_needs_no_torch():
    for name, path in MODULES.items():
        if name.startswith("builtup.core"):
            roots = {
                alias.name.split(".")[0]
                for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.Import)
                for alias in node.names
            } | {
                (node.module or "").split(".")[0]
                for node in ast.walk(ast.parse(path.read_text()))
                if isinstance(node, ast.ImportFrom)
            }
            assert not roots & {"torch", "lightning", "ttach", "timm"}, name


# Rule names that are also words of the data: a split, the keys of a fold summary, of a
# threshold file and of a metrics summary. Only the other rule names show a module that
# knows the workflow.
DATA_WORDS = {"train", "fold", "threshold", "baseline"}


def rule_names() -> set[str]:
    rules = (REPO / "workflow" / "rules").glob("*.smk")
    return {m for smk in rules for m in re.findall(r"^\s*rule (\w+):", smk.read_text(), re.M)}


def string_literals(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


# The command line is the user's door into the workflow: its defaults and help name the
# workflow's folders on purpose. Every other module is told what it needs.
@pytest.mark.parametrize(
    "name", [n for n in MODULES if n != "builtup.cli"], ids=lambda n: n.removeprefix("builtup.")
)
def test_no_module_names_a_rule_or_a_repository_path(name):
    rules = rule_names()
    assert {"predict_scene", "submission", "rasterize_mask"} <= rules
    rules -= DATA_WORDS
    for text in string_literals(MODULES[name]):
        assert text not in rules, f"{name} names the rule {text!r}"
        assert not re.match(r"(results|workflow|config|resources)/", text), f"{name}: {text!r}"


@pytest.mark.slow
def test_a_wheel_of_the_library_carries_the_workflow_schemas(tmp_path):
    """``pip install`` of a checkout (a module whose workflow is a remote source) brings the
    schemas the library validates with, though they live in workflow/schemas."""
    import shutil
    import subprocess
    import sys
    import zipfile

    pytest.importorskip("setuptools")
    source = tmp_path / "source"  # pip builds in place: a copy keeps the checkout clean
    ignore = shutil.ignore_patterns("*.egg-info", "__pycache__")
    shutil.copytree(REPO / "scripts", source / "scripts", symlinks=True, ignore=ignore)
    shutil.copytree(REPO / "workflow/schemas", source / "workflow/schemas")
    shutil.copyfile(REPO / "pyproject.toml", source / "pyproject.toml")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(tmp_path), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("builtup-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for schema in (REPO / "workflow/schemas").glob("*.yaml"):
        assert f"builtup/config/schemas/{schema.name}" in names

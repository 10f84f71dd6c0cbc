"""The pip pins (README path) and the conda files (--sdm conda) name the same versions, and
every rule runs with only the packages of the env file it declares."""

import re
import subprocess
import sys

import pytest
import yaml

from conftest import REPO


def pip_pins():
    pins = {}
    for line in (REPO / "envs" / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def conda_pins(path):
    env = yaml.safe_load(path.read_text())
    pins = {}
    for dep in env["dependencies"]:
        entries = dep["pip"] if isinstance(dep, dict) else [dep]
        for entry in entries:
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*==?\s*([0-9][^\s]*)", entry)
            if match:
                pins[match[1].lower()] = match[2]
    return pins


def test_conda_files_match_pip_pins():
    pins = pip_pins()
    files = sorted((REPO / "envs").glob("*.yaml"))
    assert files
    for path in files:
        for name, version in conda_pins(path).items():
            if name == "python":
                continue
            assert name in pins, f"{path.name}: {name} is not pinned in requirements.txt"
            assert pins[name] == version, f"{path.name}: {name} {version} != {pins[name]}"


def test_every_rule_conda_env_exists():
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for env in re.findall(r'conda:\s*\n\s*"([^"]+)"', smk.read_text()):
            assert (smk.parent / env).resolve().is_file(), f"{smk.name}: {env}"


def test_torch_pinned_with_torchvision():
    pins = pip_pins()
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"


# The modules each pinned package provides, with the ones it brings in itself.
PROVIDES = {
    "torch": ["torch"],
    "torchvision": ["torchvision"],
    "lightning": ["lightning", "torchmetrics", "lightning_utilities"],
    "timm": ["timm", "huggingface_hub", "safetensors"],
    "segmentation-models-pytorch": ["segmentation_models_pytorch"],
    "albumentations": ["albumentations", "albucore", "cv2", "scipy"],
    "ttach": ["ttach"],
    "matplotlib": ["matplotlib"],
    "scipy": ["scipy"],
    "pandas": ["pandas"],
    "rasterio": ["rasterio"],
    "rioxarray": ["rioxarray"],
    "xarray": ["xarray"],
    "fiona": ["fiona"],
    "shapely": ["shapely"],
    "pyproj": ["pyproj"],
    "pyyaml": ["yaml"],
    "jsonschema": ["jsonschema"],
    "tensorboard": ["tensorboard"],
    "mlflow-skinny": ["mlflow"],
}
BLOCKER = """
import ast, importlib, os, site, sys, tempfile
scripts, script, blocked = sys.argv[1], sys.argv[2], set(sys.argv[3].split(","))
# site-packages without the blocked packages: symlinks to every other top-level entry
view = tempfile.mkdtemp()
for packages in site.getsitepackages():
    for entry in os.listdir(packages):
        if entry.split(".")[0].split("-")[0] not in blocked and not entry.endswith(".pth"):
            if not os.path.exists(os.path.join(view, entry)):
                os.symlink(os.path.join(packages, entry), os.path.join(view, entry))
sys.path = [scripts, view] + [p for p in sys.path if "site-packages" not in p and p]
for node in ast.walk(ast.parse(open(script).read())):
    if isinstance(node, ast.ImportFrom) and node.module.startswith("builtup"):
        importlib.import_module(node.module)
"""


def rules_with_env_and_script() -> list[tuple[str, str, str]]:
    found = []
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"^(?=\s*rule \w+:)", smk.read_text(), flags=re.M):
            name = re.search(r"rule (\w+):", block)
            env = re.search(r'conda:\s*\n\s*"([^"]+)"', block)
            script = re.search(r'script:\s*\n\s*"([^"]+)"', block)
            if name and script:
                assert env, f"rule {name[1]} declares no conda env"
                found.append((name[1], env[1], script[1]))
    return found


RULES = rules_with_env_and_script()


def test_every_rule_with_a_script_is_checked():
    assert len(RULES) >= 15 and {r for r, _, _ in RULES} >= {"train", "submission", "baseline"}


@pytest.mark.parametrize("rule, env, script", RULES, ids=[r for r, _, _ in RULES])
def test_rule_imports_only_what_its_env_has(rule, env, script):
    """The entry script's library modules load where the packages its env lacks are missing."""
    rules = REPO / "workflow" / "rules"
    has = set(conda_pins((rules / env).resolve())) - {"python"}
    present = {m for pkg in has for m in PROVIDES.get(pkg, [])}
    blocked = sorted({m for pkg, mods in PROVIDES.items() for m in mods} - present)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCKER,
            str(REPO / "scripts"),
            str((rules / script).resolve()),
            ",".join(blocked),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{rule} ({env}): {result.stderr.strip().splitlines()[-1]}"

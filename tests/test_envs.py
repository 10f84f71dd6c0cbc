"""The pip pins (README path) and the conda files (--sdm conda) name the same versions."""

import re

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

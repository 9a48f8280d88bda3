"""The package's own rules: modules use each other's public names only; no global state."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "sediment_xr"
MODULES = sorted(PACKAGE.glob("*.py"))


def private_imports(path: Path) -> list[str]:
    """``from sediment_xr.m import _x`` and ``m._x`` uses of other modules in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    modules = {}  # local name -> imported sediment_xr module
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sediment_xr"):
            for alias in node.names:
                if node.module == "sediment_xr":
                    modules[alias.asname or alias.name] = alias.name
                elif alias.name.startswith("_") and alias.name != "__version__":
                    found.append(f"{node.module}.{alias.name}")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and node.attr.startswith("_")
        ):
            found.append(f"{modules[node.value.id]}.{node.attr}")
    return found


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_no_module_uses_another_modules_private_names(path):
    """Shared helpers are public names of small helper modules (_fs, _validate, ...)."""
    assert private_imports(path) == []


def test_importing_the_package_changes_no_thread_settings():
    """A notebook's process keeps its own OpenCV and BLAS thread pools (workers get a plugin)."""
    code = """
import cv2, threadpoolctl

def pools():
    return [d["num_threads"] for d in threadpoolctl.threadpool_info()]

cv2_before, pools_before = cv2.getNumThreads(), pools()
import sediment_xr as sx
from sediment_xr.testing import synthetic_series

s = synthetic_series(4, size=64, seed=0)
f = sx.preprocess(s["frames"].chunk({"time": 2}), rows=[-25, None])
m = sx.fit_kmeans(sx.sample_pixels(f, sample_size=500), n_clusters=3)
sx.cover(sx.label(f, m)).compute()
# scikit-learn and numba load pools of their own; none of them is limited, cv2 neither
assert cv2.getNumThreads() == cv2_before, (cv2.getNumThreads(), cv2_before)
assert min(pools()) >= min(pools_before), (pools(), pools_before)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _requirements() -> dict[str, str]:
    """Core dependencies of pyproject.toml: name -> floor."""
    import re
    import tomllib

    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]
    floors = {}
    for spec in project["dependencies"]:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?>=([0-9.]+)", spec.replace(" ", ""))
        assert match, f"{spec}: every core dependency has a floor and no upper bound (SPEC 0)"
        floors[match.group(1).lower()] = match.group(3)
    return floors


def test_environment_yml_has_every_dependency_at_its_floor():
    """environment.yml (conda users) stays in step with pyproject.toml."""
    import yaml

    conda = {"opencv-python-headless": "py-opencv"}  # conda-forge's names
    env = yaml.safe_load((PACKAGE.parent / "environment.yml").read_text())
    listed = {}
    for spec in env["dependencies"]:
        if isinstance(spec, str) and ">=" in spec:
            name, floor = spec.split(">=")
            listed[name.strip()] = floor.strip()
    for name, floor in _requirements().items():
        names = ["dask", "distributed"] if name == "dask" else [conda.get(name, name)]
        for conda_name in names:
            found = listed.get(conda_name, "")
            # conda-forge's OpenCV has no wheel build number (4.10.0, not 4.10.0.84)
            same = found == floor or (conda_name == "py-opencv" and floor.startswith(found))
            assert found and same, f"{conda_name}>={floor} in environment.yml"


def test_minimum_versions_ci_installs_every_floor():
    """constraints-min.txt (the minimum-versions CI job) pins each core floor exactly."""
    pins = {}
    for line in (PACKAGE.parent / "constraints-min.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    from packaging.version import Version

    for name, floor in _requirements().items():
        pin = pins.get(name)
        assert pin and Version(pin) == Version(floor), f"constraints-min.txt: {name}=={floor}"

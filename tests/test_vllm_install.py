"""The `[vllm]` extra resolves in one command on a GPU machine, and the CPU path keeps its pins.

vLLM pins its own torch and transformers (vLLM 0.33: torch==2.14.0, transformers<5.21), the
CPU path pins torch==2.13.0 and takes the newest transformers. They cannot share a venv, so the
GPU install is a venv of its own where vLLM's pins win (README, "Several GPUs"), and the extra
must not leak vLLM's caps into the core dependencies the CPU path resolves. Both are resolved
here against the package index with `pip install --dry-run --report` (metadata only: nothing is
downloaded whole or installed). What needs a GPU (CUDA wheels loading, the engine starting) is
bench/gpu_check.py's and README's.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tomllib
from importlib.metadata import version as installed_version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

# The README's CPU set-up: `pip install torch==2.13.0 && pip install -e '.[dev]'`.
CPU_TORCH = "torch==2.13.0"


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _resolve(requirements: list[str], tmp_path: Path) -> dict[str, dict]:
    """name -> the metadata pip would install for `requirements` in an empty venv."""
    report = tmp_path / f"report-{len(list(tmp_path.iterdir()))}.json"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q",
         "--report", str(report), *requirements],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900)
    assert done.returncode == 0, done.stdout.decode()[-3000:]
    items = json.loads(report.read_text())["install"]
    return {canonicalize_name(i["metadata"]["name"]): i["metadata"] for i in items}


def _index_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module", autouse=True)
def _index():
    if not _index_reachable():
        pytest.skip("pypi.org is not reachable: the resolution cannot be checked offline")


def test_the_vllm_extra_resolves_with_vllms_own_torch_and_transformers(tmp_path):
    project = _project()
    extra = project["optional-dependencies"]["vllm"]
    resolved = _resolve([*project["dependencies"], *extra], tmp_path)
    vllm = resolved["vllm"]
    assert Version(vllm["version"]) in Requirement(extra[0]).specifier
    # vLLM's own pins decide torch and transformers there, and every core dependency of
    # halo-forge resolves beside them.
    pins = {canonicalize_name(r.name): r for r in map(Requirement, vllm["requires_dist"])
            if r.marker is None}
    for name in ("torch", "transformers"):
        assert Version(resolved[name]["version"]) in pins[name].specifier, (name, pins[name])
    for requirement in map(Requirement, project["dependencies"]):
        got = resolved[canonicalize_name(requirement.name)]["version"]
        assert Version(got) in requirement.specifier, (requirement, got)


def test_the_cpu_path_keeps_its_torch_and_transformers(tmp_path):
    """vLLM's caps must stay in the extra: in the core dependencies they would take the CPU
    path back to an older transformers than the one it runs today."""
    project = _project()
    resolved = _resolve([CPU_TORCH, *project["dependencies"]], tmp_path)
    assert resolved["torch"]["version"].split("+")[0] == "2.13.0"
    assert Version(resolved["transformers"]["version"]) >= Version(
        installed_version("transformers"))
    assert "vllm" not in resolved

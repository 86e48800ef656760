"""Rendering the Kubernetes manifests and finding the tools that check them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

K8S = ROOT / "k8s"
OVERLAYS = ("dev", "prod")
# kubectl's own version here and in CI: schemas kubernetes-validate ships, read offline.
KUBERNETES_VERSION = "1.32.0"


def require_tool(name: str) -> str:
    """The path of a command-line tool: the virtualenv's first, then PATH.

    Missing, the tests that need it are skipped loudly, or fail under CI=true.
    """
    found = shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    if found is None:
        message = f"{name} is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; with CI=true the manifest and image checks must run")
        pytest.skip(f"!!! {message}: the manifest and image checks that need it are SKIPPED.")
    return found


def render(directory: Path) -> str:
    kubectl = require_tool("kubectl")
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def validate(text: str, tmp_path: Path) -> None:
    """kubernetes-validate --strict: every field known to the schema, every required one there."""
    tool = require_tool("kubernetes-validate")
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(text)
    result = subprocess.run(
        [tool, "--strict", "--quiet", "-k", KUBERNETES_VERSION, str(manifest)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="session", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]], str]:
    """An overlay's name, its rendered objects and the rendered text."""
    text = render(K8S / "overlays" / request.param)
    return request.param, documents(text), text

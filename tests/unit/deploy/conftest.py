"""Fixtures of the deployment tests: the kustomize renders of the overlays."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")

Manifest = dict[str, Any]


def kustomize(directory: Path) -> list[Manifest]:
    """Render ``directory`` with kubectl's built-in kustomize (a real implementation)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: cannot render the kustomize overlays")
    done = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"kustomize {directory} failed:\n{done.stderr}"
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [doc for doc in yaml.load_all(done.stdout, Loader=loader) if doc]


@pytest.fixture(scope="session")
def renders() -> dict[str, list[Manifest]]:
    """Every overlay's rendered objects, by overlay name."""
    return {name: kustomize(K8S / "overlays" / name) for name in OVERLAYS}


@pytest.fixture(scope="session")
def base_objects() -> list[Manifest]:
    """The base's objects as written (the Secret template lives only here)."""
    return kustomize(K8S / "base")

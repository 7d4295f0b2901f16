"""Fixtures shared by the test modules."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from seeknal_jupyter.examples import init_example
from seeknal_jupyter.project import Project

KERNEL = "seeknal-test"


def register_kernel(folder: Path, python: str) -> str:
    """Write the ``seeknal-test`` kernelspec for ``python``; returns its JUPYTER_PATH."""
    spec = folder / "kernels" / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    argv = [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    kernel = {"argv": argv, "display_name": KERNEL, "language": "python"}
    (spec / "kernel.json").write_text(json.dumps(kernel))
    return str(folder)


@pytest.fixture(scope="session")
def kernelspec() -> Callable[[Path, str], str]:
    """Writes the ``seeknal-test`` kernelspec for a Python into a folder and
    returns the folder, to put on JUPYTER_PATH."""
    return register_kernel


@pytest.fixture(scope="module")
def seeknal_kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The name of a kernel that runs on this virtual environment's Python.

    Its kernelspec is first on JUPYTER_PATH, so a user-level kernel of the same
    name cannot stand in for it.
    """
    folder = register_kernel(tmp_path_factory.mktemp("jupyter"), sys.executable)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", folder)
        yield KERNEL


@pytest.fixture(scope="session")
def fraud_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fraud example as ``seeknal init`` writes it, made once; copy it to
    change it (``fraud``)."""
    return init_example("fraud-detection", tmp_path_factory.mktemp("template") / "p")


@pytest.fixture
def fraud(fraud_template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the fraud example, never run, in this test's folder."""
    return Path(shutil.copytree(fraud_template, tmp_path / "fraud"))


@pytest.fixture(scope="session")
def production_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fraud example after one production run (copied for each test)."""
    folder = init_example("fraud-detection", tmp_path_factory.mktemp("base") / "fraud")
    Project(folder).run(parallel=True)
    return folder


@pytest.fixture()
def project(production_project: Path, tmp_path: Path) -> Project:
    """A copy of ``production_project`` for one test, its outputs linked again."""
    folder = tmp_path / "fraud"
    shutil.copytree(production_project, folder, symlinks=True)
    copied = Project(folder)
    assert copied.run().count("cached") == 15  # links the copied outputs again
    return copied

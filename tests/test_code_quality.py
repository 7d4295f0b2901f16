"""The package passes ruff and mypy, as STYLE.md asks, and its build settings
hold together; run as part of the suite."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_ruff_finds_nothing() -> None:
    result = run_tool("ruff", "check", "seeknal_jupyter", "tests", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing() -> None:
    result = run_tool("mypy", "seeknal_jupyter")
    assert result.returncode == 0, result.stdout + result.stderr


def test_code_is_formatted() -> None:
    result = run_tool(
        "ruff", "format", "--check", "seeknal_jupyter", "tests", "benchmarks"
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_build_backend_can_read_the_license_expression() -> None:
    """``license = "Apache-2.0"`` is an SPDX expression (PEP 639), which
    setuptools reads from version 77 on."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requires = [Requirement(r) for r in pyproject["build-system"]["requires"]]
    (setuptools,) = [r for r in requires if r.name == "setuptools"]

    assert pyproject["project"]["license"] == "Apache-2.0"
    assert not setuptools.specifier.contains("76.1.0")
    assert setuptools.specifier.contains("77.0.0")

"""Example projects that `seeknal init --example NAME DIR` writes to disk."""

from __future__ import annotations

import importlib
from pathlib import Path

EXAMPLES: dict[str, str] = {
    "fraud-detection": "seeknal_jupyter.examples.fraud",
    "nyc-flights": "seeknal_jupyter.examples.flights",
}


def init_example(name: str, dest: str | Path, scale: int = 1) -> Path:
    """Write the example project ``name`` into ``dest``.

    Args:
        name: one of ``EXAMPLES``.
        dest: folder to create (it may exist but must not hold a ``seeknal/`` folder).
        scale: multiplies the generated row counts (fraud example only).

    Returns:
        The project folder.

    Raises:
        ValueError: for an unknown example name, a scale below 1 or a folder that
            already holds a project.
    """
    if name not in EXAMPLES:
        known = ", ".join(sorted(EXAMPLES))
        raise ValueError(f"unknown example {name!r}; choose one of: {known}")
    if scale < 1:
        raise ValueError(f"--scale must be 1 or more, got {scale}")
    folder = Path(dest)
    if (folder / "seeknal").exists():
        raise ValueError(f"{folder} already holds a seeknal/ folder; choose another")
    folder.mkdir(parents=True, exist_ok=True)
    module = importlib.import_module(EXAMPLES[name])
    return module.write_project(folder, scale)  # type: ignore[no-any-return]

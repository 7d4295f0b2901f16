"""The notebooks, run top to bottom on a real kernel, and live progress over the wire.

nbclient executes each notebook on an ipykernel of this virtual environment and keeps
the widget state; the assertions read what a reader would see. Two tests talk to a
kernel through jupyter_client directly, to watch widget messages arrive while a cell
is still running and to press the Cancel button from the outside. The Binder test
builds a new virtual environment from ``binder/`` alone and runs the notebooks there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import venv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def execute(path: Path, workdir: Path, kernel: str) -> Any:
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook,
        kernel_name=kernel,
        timeout=300,
        store_widget_state=True,
        resources={"metadata": {"path": str(workdir)}},
    ).execute()
    return notebook


def outputs(notebook: Any) -> list[Any]:
    return [
        o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs
    ]


def rich(notebook: Any, mime: str) -> list[str]:
    return [o.data[mime] for o in outputs(notebook) if mime in o.get("data", {})]


def printed(notebook: Any) -> str:
    return "".join(o.text for o in outputs(notebook) if o.output_type == "stream")


def drawn_nodes(svg: str) -> int:
    titles = re.findall(r'<g id="node\d+" class="node">\s*<title>([^<]*)</title>', svg)
    return sum(1 for t in titles if not t.startswith("__legend__"))


def overall_bars(notebook: Any) -> list[dict[str, Any]]:
    """The saved state of every run's overall progress bar."""
    state = notebook.metadata["widgets"][WIDGET_STATE]["state"]
    return [
        model["state"]
        for model in state.values()
        if model["model_name"] == "IntProgressModel"
        and model["state"].get("description") == "all nodes"
    ]


def check_parallel_notebook(notebook: Any) -> None:
    """What 01_parallel_execution shows a reader."""
    assert not [o for o in outputs(notebook) if o.output_type == "error"]
    summaries = [s for s in rich(notebook, "text/html") if "seeknal-run" in s]
    succeeded = [
        s for s in summaries if "Run succeeded: 15 executed, 0 cached of 15 nodes" in s
    ]
    assert len(succeeded) == 4
    assert (
        sum("Run succeeded: 0 executed, 15 cached of 15 nodes" in s for s in summaries)
        == 1
    )
    assert all(s.count(">SUCCESS<") == 15 for s in succeeded)
    (svg,) = rich(notebook, "image/svg+xml")
    assert drawn_nodes(svg) == 15
    panels = [t for t in rich(notebook, "text/plain") if t.startswith("Running fraud")]
    assert len(panels) == 5
    assert all("\nall nodes  15/15\n" in panel for panel in panels)
    bars = overall_bars(notebook)
    assert len(bars) == 5
    assert all(bar["value"] == bar["max"] == 15 for bar in bars)
    text = printed(notebook)
    assert "<Manifest fraud: 15 nodes, 16 edges, 4 layers>" in rich(
        notebook, "text/plain"
    )
    assert "layer 1: 8 nodes" in text
    assert "layer 4: 1 nodes: exposure.training_data" in text
    assert re.search(r"speed-up: +\d+\.\d\dx", text)
    workers = [
        int(w) for w in re.findall(r"workers: <b>(\d+)</b>", " ".join(summaries))
    ]
    assert 2 in workers and 3 in workers


def check_flights_notebook(notebook: Any) -> None:
    """What 03_real_data_flights shows a reader."""
    assert not [o for o in outputs(notebook) if o.output_type == "error"]
    first, last = rich(notebook, "image/svg+xml")
    assert drawn_nodes(first) == 13
    assert drawn_nodes(last) == 14
    summaries = " ".join(s for s in rich(notebook, "text/html") if "seeknal-run" in s)
    assert "Run succeeded: 13 executed, 0 cached of 13 nodes" in summaries
    assert "Run succeeded: 1 executed, 13 cached of 14 nodes" in summaries
    assert "Run succeeded: 0 executed, 14 cached of 14 nodes" in summaries
    text = printed(notebook)
    assert "Added transform.carrier_monthly_delays: layer 3" in text
    assert "Saved to seeknal/transforms/carrier_monthly_delays.yml." in text
    assert "name: carrier_monthly_delays" in text
    bars = overall_bars(notebook)
    assert sorted(bar["max"] for bar in bars) == [13, 14, 14]
    assert all(bar["value"] == bar["max"] for bar in bars)


def test_parallel_execution_notebook(tmp_path: Path, seeknal_kernel: str) -> None:
    check_parallel_notebook(
        execute(NOTEBOOKS / "01_parallel_execution.ipynb", tmp_path, seeknal_kernel)
    )


def test_real_data_flights_notebook(tmp_path: Path, seeknal_kernel: str) -> None:
    check_flights_notebook(
        execute(NOTEBOOKS / "03_real_data_flights.ipynb", tmp_path, seeknal_kernel)
    )


def test_notebooks_are_committed_without_outputs() -> None:
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name
        assert "widgets" not in notebook.metadata, path.name


def test_notebooks_write_their_projects_into_the_ignored_workspace() -> None:
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "notebooks/workspace/" in ignored
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        (setup,) = [
            cell.source
            for cell in nbformat.read(path, as_version=4).cells
            if "%seeknal init" in cell.source
        ]
        assert 'workspace = pathlib.Path("workspace/' in setup, path.name
        assert "shutil.rmtree(workspace, ignore_errors=True)" in setup, path.name
        assert "tempfile" not in setup, path.name


class Kernel:
    """A real ipykernel driven over ZeroMQ, recording when each message arrives."""

    def __init__(self, workdir: Path, name: str) -> None:
        self.manager = KernelManager(kernel_name=name)
        self.manager.start_kernel(cwd=str(workdir))
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def send(self, code: str) -> str:
        msg_id: str = self.client.execute(code)
        return msg_id

    def messages(self, msg_id: str, timeout: float = 120) -> list[tuple[float, Any]]:
        """Every iopub message of a request, timed, until the kernel is idle."""
        seen = []
        while True:
            message = self.client.get_iopub_msg(timeout=timeout)
            seen.append((time.monotonic(), message))
            if (
                message["parent_header"].get("msg_id") == msg_id
                and message["msg_type"] == "status"
                and message["content"]["execution_state"] == "idle"
            ):
                return seen

    def reply(self, msg_id: str, timeout: float = 120) -> tuple[float, Any]:
        while True:
            message = self.client.get_shell_msg(timeout=timeout)
            if message["parent_header"].get("msg_id") == msg_id:
                return time.monotonic(), message

    def run(self, code: str) -> list[Any]:
        msg_id = self.send(code)
        seen = [m for _, m in self.messages(msg_id)]
        _, reply = self.reply(msg_id)
        assert reply["content"]["status"] == "ok", seen
        return seen

    def click(self, comm_id: str) -> None:
        content = {
            "comm_id": comm_id,
            "data": {"method": "custom", "content": {"event": "click"}},
        }
        self.client.shell_channel.send(self.client.session.msg("comm_msg", content))

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


def test_the_kernel_runs_in_this_environment(
    tmp_path: Path, seeknal_kernel: str
) -> None:
    running = Kernel(tmp_path, seeknal_kernel)
    try:
        shown = running.run("import sys\nsys.prefix")
    finally:
        running.close()
    results = [
        m["content"]["data"]["text/plain"]
        for m in shown
        if m["msg_type"] == "execute_result"
    ]
    assert results == [repr(sys.prefix)]


@pytest.fixture
def kernel(tmp_path: Path, seeknal_kernel: str) -> Any:
    running = Kernel(tmp_path, seeknal_kernel)
    running.run(
        "%load_ext seeknal_jupyter\n%seeknal init --example fraud-detection fraud"
    )
    yield running
    running.close()


def widget_models(messages: list[tuple[float, Any]]) -> dict[str, str]:
    """comm id -> model name of the widgets opened in these messages."""
    return {
        m["content"]["comm_id"]: m["content"]["data"]["state"]["_model_name"]
        for _, m in messages
        if m["msg_type"] == "comm_open"
    }


def test_widget_updates_arrive_while_the_cell_is_running(kernel: Kernel) -> None:
    kernel.run(
        "%%seeknal_node transform slow\n"
        "SELECT sum(hash(range) % 1000) AS total FROM range(600000000)"
    )

    msg_id = kernel.send("%seeknal run --parallel")
    time.sleep(0.5)
    queued = kernel.send("6 * 7")
    messages = kernel.messages(msg_id)
    replied, reply = kernel.reply(msg_id)

    assert reply["content"]["status"] == "ok"
    later = [m for _, m in kernel.messages(queued)]
    answered, answer = kernel.reply(queued)
    assert answer["content"]["status"] == "ok"
    assert answered > replied
    assert [
        m["content"]["data"]["text/plain"]
        for m in later
        if m["msg_type"] == "execute_result"
    ] == ["42"]
    bars = {
        comm
        for comm, model in widget_models(messages).items()
        if model == "IntProgressModel"
    }
    overall = next(
        m["content"]["comm_id"]
        for _, m in messages
        if m["msg_type"] == "comm_open"
        and m["content"]["data"]["state"].get("description") == "all nodes"
    )
    assert overall in bars
    values = [
        (at, m["content"]["data"]["state"]["value"])
        for at, m in messages
        if m["msg_type"] == "comm_msg"
        and m["content"]["comm_id"] == overall
        and m["content"]["data"].get("method") == "update"
        and "value" in m["content"]["data"]["state"]
    ]
    assert values[-1][1] == 16
    assert len({value for _, value in values}) >= 3
    first_at, first_value = values[0]
    assert first_value < 16
    assert replied - first_at > 0.5
    assert all(at < replied for at, _ in values)
    summary = [
        m["content"]["data"]["text/html"]
        for _, m in messages
        if m["msg_type"] == "execute_result"
    ]
    assert "Run succeeded: 16 executed, 0 cached of 16 nodes" in summary[0]


def test_the_cancel_button_stops_a_running_cell(kernel: Kernel) -> None:
    kernel.run(
        "%%seeknal_node transform endless\n"
        "SELECT sum(hash(range)) AS total FROM range(20000000000)"
    )
    msg_id = kernel.send("%seeknal run --parallel")
    button = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        message = kernel.client.get_iopub_msg(timeout=30)
        content = json.dumps(message["content"])
        if message["msg_type"] == "comm_open" and "ButtonModel" in content:
            button = message["content"]["comm_id"]
        if "transform.endless</code></td><td>1</td><td style='color:#1d4ed8" in content:
            break
    else:
        raise AssertionError("the panel never showed transform.endless running")
    queued = kernel.send("after = 6 * 7\nafter")
    assert button is not None
    kernel.click(button)
    clicked = time.monotonic()

    messages = kernel.messages(msg_id)
    replied, reply = kernel.reply(msg_id)

    assert replied - clicked < 10
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "UsageError"
    errors = "".join(
        m["content"]["text"]
        for _, m in messages
        if m["msg_type"] == "stream" and m["content"]["name"] == "stderr"
    )
    assert re.fullmatch(
        r"UsageError: Run cancelled: .*\d+ cancelled of 16 nodes in [\d.]+s\n", errors
    )
    summaries = [
        m["content"]["data"]["text/html"]
        for _, m in messages
        if m["msg_type"] == "display_data" and "text/html" in m["content"]["data"]
    ]
    assert "transform.endless: interrupted while running" in summaries[0]
    assert any(
        m["msg_type"] == "comm_msg"
        and m["content"]["data"]["state"].get("description") == "Cancelling…"
        for _, m in messages
        if m["msg_type"] == "comm_msg"
    )

    later = [m for _, m in kernel.messages(queued)]
    _, answer = kernel.reply(queued)
    assert answer["content"]["status"] == "aborted" or any(
        m["msg_type"] == "execute_result" and m["content"]["data"]["text/plain"] == "42"
        for m in later
    )
    assert [
        m["content"]["data"]["text/plain"]
        for m in kernel.run("6 * 7")
        if m["msg_type"] == "execute_result"
    ] == ["42"]


def test_binder_environment_runs_the_notebooks(
    tmp_path: Path, kernelspec: Callable[[Path, str], str], seeknal_kernel: str
) -> None:
    """A fresh virtual environment from binder/ alone runs both notebooks."""
    env = tmp_path / "binder-env"
    venv.create(env, with_pip=True, system_site_packages=False)
    bin_dir = env / "bin"
    environ = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    environ.pop("PYTHONPATH", None)
    environ["VIRTUAL_ENV"] = str(env)
    python = str(bin_dir / "python")
    environ["JUPYTER_PATH"] = kernelspec(tmp_path / "jupyter", python)

    def step(*command: str, cwd: Path = ROOT) -> None:
        done = subprocess.run(
            command,
            check=False,
            cwd=cwd,
            env=environ,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    step(python, "-m", "pip", "install", "-q", "-r", "binder/requirements.txt")
    step("bash", "binder/postBuild")
    # Binder's image brings Jupyter itself; nbclient stands in for it here.
    step(python, "-m", "pip", "install", "-q", "nbclient>=0.9")
    copies = tmp_path / "notebooks"
    shutil.copytree(NOTEBOOKS, copies)
    runner = textwrap.dedent(
        f"""
        import sys, nbformat
        from pathlib import Path
        from nbclient import NotebookClient
        assert Path(sys.prefix).resolve() == Path({str(env)!r}).resolve(), sys.prefix
        import seeknal_jupyter
        assert "site-packages" in seeknal_jupyter.__file__, seeknal_jupyter.__file__
        for path in sorted(Path({str(copies)!r}).glob("*.ipynb")):
            notebook = nbformat.read(path, as_version=4)
            NotebookClient(notebook, kernel_name={seeknal_kernel!r}, timeout=300,
                           store_widget_state=True,
                           resources={{"metadata": {{"path": str(path.parent)}}}}).execute()
            nbformat.write(notebook, path)
        """
    )
    step(python, "-c", runner, cwd=tmp_path)

    check_parallel_notebook(
        nbformat.read(copies / "01_parallel_execution.ipynb", as_version=4)
    )
    check_flights_notebook(
        nbformat.read(copies / "03_real_data_flights.ipynb", as_version=4)
    )

"""The notebooks, run top to bottom on a real kernel, and live progress over the wire.

nbclient executes each notebook on an ipykernel of this virtual environment and keeps
the widget state; the assertions read what a reader would see. Two tests talk to a
kernel through jupyter_client directly, to watch widget messages arrive while a cell
is still running and to press the Cancel button from the outside. The Binder test
builds a new virtual environment from ``binder/`` alone and runs the notebooks there.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import tomllib
import venv
from collections.abc import Callable
from importlib.metadata import packages_distributions
from pathlib import Path
from typing import Any

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager
from kernels import Kernel
from nbclient import NotebookClient
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from seeknal_jupyter.project import default_workers

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


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


def saved_widgets(notebook: Any) -> dict[str, str]:
    """Model id -> model name of every widget in the saved widget state."""
    state = notebook.metadata["widgets"][WIDGET_STATE]["state"]
    return {model_id: model["model_name"] for model_id, model in state.items()}


def widget_views(notebook: Any) -> list[str]:
    """The model name of each widget an output displays."""
    models = saved_widgets(notebook)
    return [models[view["model_id"]] for view in rich(notebook, WIDGET_VIEW)]


def cell_outputs(notebook: Any, starts: str) -> list[Any]:
    """Outputs of the one code cell whose source starts with ``starts``."""
    (cell,) = [
        c
        for c in notebook.cells
        if c.cell_type == "code" and c.source.startswith(starts)
    ]
    return list(cell.outputs)


def stream(cell: list[Any]) -> str:
    return "".join(o.text for o in cell if o.output_type == "stream")


def most_running(log: str) -> int:
    """The most nodes a printed progress log shows started and not yet finished."""
    running: set[str] = set()
    most = 0
    for line in log.splitlines():
        started = re.fullmatch(r"  start   (\S+) \(layer \d+\)", line)
        finished = re.fullmatch(r" +\[\d+/\d+\] \w+ +(\S+) .*", line)
        if started:
            running.add(started.group(1))
        elif finished:
            running.discard(finished.group(1))
        most = max(most, len(running))
    return most


def check_dag_output(cell: list[Any]) -> tuple[str, str]:
    """The one DAG picture of a cell: stored once, as SVG beside its text view."""
    (picture,) = [o for o in cell if o.output_type == "execute_result"]
    assert sorted(picture.data) == ["image/svg+xml", "text/plain"]
    return picture.data["image/svg+xml"], picture.data["text/plain"]


def run_summaries(notebook: Any) -> list[str]:
    """The text of each run summary the notebook keeps where its panel was."""
    return [
        t
        for t in rich(notebook, "text/plain")
        if t.startswith("node ") and "\nRun " in t
    ]


def headlines(notebook: Any, pattern: str) -> list[str]:
    """What each run summary of the notebook says, matched by ``pattern``."""
    summaries = [s for s in rich(notebook, "text/html") if "seeknal-run" in s]
    found = [re.search(pattern, s) for s in summaries]
    return [match.group(1) if match else "" for match in found]


def check_parallel_notebook(notebook: Any) -> None:
    """What 01_parallel_execution shows a reader."""
    assert not [o for o in outputs(notebook) if o.output_type == "error"]
    assert headlines(notebook, r"Run succeeded: ([^<]*) of 15 nodes") == [
        "15 executed, 0 cached",
        "15 executed, 0 cached",
        "15 executed, 0 cached",
        "0 executed, 15 cached",
    ]
    summaries = [s for s in rich(notebook, "text/html") if "seeknal-run" in s]
    assert all(s.count(">SUCCESS<") == 15 for s in summaries[:3])
    workers = [
        int(w) for s in summaries for w in re.findall(r"workers: <b>(\d+)</b>", s)
    ]
    assert workers == [1, default_workers(), 3, 3]

    runs = run_summaries(notebook)
    assert len(runs) == 4
    for run in runs:
        lines = run.splitlines()
        assert len(lines) == 1 + 15 + 3
        assert re.match(r"source\.transactions +1  \w+ +10,000 ", lines[1])
        assert lines[-1].startswith("Run succeeded: ")
    assert all(" SUCCESS " in line for line in runs[0].splitlines()[1:16])
    assert all(" CACHED " in line for line in runs[3].splitlines()[1:16])
    bars = overall_bars(notebook)
    assert len(bars) == 4
    assert all(bar["value"] == bar["max"] == 15 for bar in bars)
    assert widget_views(notebook) == []
    assert "FloatProgressModel" not in saved_widgets(notebook).values()

    assert "<Manifest fraud: 15 nodes, 16 edges, 4 layers>" in rich(
        notebook, "text/plain"
    )
    timing = stream(cell_outputs(notebook, "import os"))
    assert f"cores on this machine: {os.cpu_count()}\n" in timing
    assert re.search(r"\nsequential \d+\.\d\d s +\d+\.\d\d s +1\n", timing)
    assert re.search(
        rf"\nparallel +\d+\.\d\d s +\d+\.\d\d s +{default_workers()}\n", timing
    )
    assert re.search(r"\nspeed-up: \d+\.\d\dx\n", timing)
    assert re.search(r"  critical path: +\d+\.\d\d s\n", timing)
    assert re.search(r"  node time / workers: +\d+\.\d\d s\n$", timing)

    svg, text = check_dag_output(cell_outputs(notebook, "%seeknal dag"))
    assert drawn_nodes(svg) == 15
    assert text.count("[success · ") == 15
    layers = stream(cell_outputs(notebook, "project = %seeknal project"))
    assert "layer 1 (8): source.transactions, source.user_profiles," in layers
    assert "\nlayer 4 (1): exposure.training_data\n" in layers
    path = re.findall(r"^  (\S+): \d+\.\d\d s$", layers, re.MULTILINE)
    assert path[0].startswith("source.") and path[-1] == "exposure.training_data"
    for node_id in path:
        assert re.search(rf"  {re.escape(node_id)}  .*, critical\]", text), node_id
    assert text.count(", critical]") == len(path)

    log = stream(cell_outputs(notebook, "%config SeeknalMagics.progress = 'text'"))
    assert re.match(
        r"Running fraud \[\w+\] — full, 2 workers: 15 to run, 0 cached, "
        r"15 nodes in 4 layers\n",
        log,
    )
    assert log.count("  start   ") == 15
    assert len(re.findall(r"  \[\d+/15\] SUCCESS ", log)) == 15
    assert most_running(log) == 2
    assert "workers: 2, wall time: " in log


def check_flights_notebook(notebook: Any) -> None:
    """What 03_real_data_flights shows a reader."""
    assert not [o for o in outputs(notebook) if o.output_type == "error"]
    dag_cells = [
        list(c.outputs)
        for c in notebook.cells
        if c.cell_type == "code" and "%seeknal dag" in c.source
    ]
    first, last = (check_dag_output(cell) for cell in dag_cells)
    assert drawn_nodes(first[0]) == 13
    assert "[success" not in first[1]
    assert drawn_nodes(last[0]) == 14
    assert last[1].count("[success · ") == 14
    assert headlines(notebook, r"Run succeeded: ([^<]*) nodes in") == [
        "13 executed, 0 cached of 13",
        "1 executed, 13 cached of 14",
        "0 executed, 14 cached of 14",
        "14 executed, 0 cached of 14",
    ]
    runs = run_summaries(notebook)
    assert [run.splitlines()[-1].split(" nodes in ")[0] for run in runs] == [
        "Run succeeded: 13 executed, 0 cached of 13",
        "Run succeeded: 1 executed, 13 cached of 14",
        "Run succeeded: 0 executed, 14 cached of 14",
        "Run succeeded: 14 executed, 0 cached of 14",
    ]
    assert re.search(
        r"\nexposure\.departure_delay_training +4  SUCCESS +328,521 ", runs[-1]
    )
    text = printed(notebook)
    assert (
        "Added transform.carrier_monthly_delays: layer 3, inputs "
        "transform.flights_clean.\n"
        "transform.carrier_monthly_delays against production: ADDED" in text
    )
    assert "Saved to seeknal/transforms/carrier_monthly_delays.yml." in text
    assert "name: carrier_monthly_delays" in text
    bars = overall_bars(notebook)
    assert sorted(bar["max"] for bar in bars) == [13, 14, 14, 14]
    assert all(bar["value"] == bar["max"] for bar in bars)
    assert widget_views(notebook) == []
    times = stream(cell_outputs(notebook, 'print(f"wall time:'))
    assert re.match(r"wall time: \d+\.\d\d s with \d+ workers\ncritical path:\n", times)
    path = re.findall(r"^  (\S+): \d+\.\d\d s$", times, re.MULTILINE)
    assert path[0] == "source.flights"
    assert path[-1] == "exposure.departure_delay_training"
    assert last[1].count(", critical]") == len(path)
    assert re.search(r"\nslowest node: \S+ \(\d+\.\d\d s\)\n$", times)


def test_parallel_execution_notebook_in_a_folder_with_a_space(
    tmp_path: Path, seeknal_kernel: str
) -> None:
    folder = tmp_path / "my notebooks"
    folder.mkdir()
    copy = Path(shutil.copy(NOTEBOOKS / "01_parallel_execution.ipynb", folder))

    notebook = execute(copy, folder, seeknal_kernel)

    check_parallel_notebook(notebook)
    assert (folder / "workspace/parallel/fraud/target/manifest.json").is_file()
    assert stream(cell_outputs(notebook, "import pathlib")) == (
        f"Wrote the fraud-detection example to {folder}/workspace/parallel/fraud "
        "(15 node files). It is now the notebook's project.\n"
    )


def test_real_data_flights_notebook(tmp_path: Path, seeknal_kernel: str) -> None:
    check_flights_notebook(
        execute(NOTEBOOKS / "03_real_data_flights.ipynb", tmp_path, seeknal_kernel)
    )


def test_a_long_query_shows_no_progress_bar_but_the_panel(
    tmp_path: Path, seeknal_kernel: str
) -> None:
    """DuckDB draws its own bar from worker threads after 2 s unless it is off."""
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(source)
        for source in (
            "%load_ext seeknal_jupyter\n%seeknal init --example fraud-detection fraud",
            (
                "%%seeknal_node transform slow\n"
                "SELECT sum(hash(range) % 7) AS s FROM range(800000000)"
            ),
            "slow = %seeknal run --parallel --nodes slow\nslow.nodes['transform.slow']",
            "%seeknal show slow",
        )
    ]
    NotebookClient(
        notebook,
        kernel_name=seeknal_kernel,
        timeout=300,
        store_widget_state=True,
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()

    assert not [o for o in outputs(notebook) if o.output_type == "error"]
    (outcome,) = [
        o.data["text/plain"]
        for o in notebook.cells[2].outputs
        if o.output_type == "execute_result"
    ]
    assert "status='success'" in outcome and "rows=1" in outcome
    seconds = float(re.findall(r"seconds=([\d.]+)", outcome)[0])
    assert seconds > 2.5, "the query must outlast DuckDB's 2 s progress-bar delay"
    assert widget_views(notebook) == []
    assert sorted(set(saved_widgets(notebook).values())) == [
        "ButtonModel",
        "ButtonStyleModel",
        "HBoxModel",
        "HTMLModel",
        "HTMLStyleModel",
        "IntProgressModel",
        "LabelModel",
        "LabelStyleModel",
        "LayoutModel",
        "ProgressStyleModel",
        "VBoxModel",
    ]


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


def requires_python() -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return str(project["requires-python"])


def binder_python() -> str:
    """The Python version binder/runtime.txt asks repo2docker for."""
    runtime = (ROOT / "binder/runtime.txt").read_text().strip()
    match = re.fullmatch(r"python-(3\.\d+)", runtime)
    assert match, f"runtime.txt must read python-3.X, not {runtime!r}"
    return match.group(1)


def test_binder_asks_for_a_python_the_package_supports() -> None:
    assert requires_python() == ">=3.11"
    assert binder_python() == "3.11"
    assert SpecifierSet(requires_python()).contains(binder_python())
    assert not SpecifierSet(requires_python()).contains("3.10")


def notebook_imports() -> set[str]:
    """The top-level modules the notebooks' code cells import."""
    modules = set()
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type != "code":
                continue
            tree = ast.parse(TransformerManager().transform_cell(cell.source))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module:
                    modules.add(node.module.split(".")[0])
    return modules


def test_binder_installs_what_the_notebooks_import_and_no_more() -> None:
    requirements = [
        line
        for line in (ROOT / "binder/requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert requirements == ["ipykernel>=7"]
    assert (
        "python -m pip install --no-cache-dir .\n"
        in (ROOT / "binder/postBuild").read_text()
    )
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {
        Requirement(r).name: str(Requirement(r).specifier)
        for r in project["dependencies"]
    }
    assert pins["ipywidgets"] == ">=8"
    imports = notebook_imports()
    assert imports == {"pathlib", "shutil", "os", "duckdb"}
    distributions = packages_distributions()
    for module in imports - set(sys.stdlib_module_names):
        assert {d.lower() for d in distributions[module]} <= set(pins), module


def test_the_kernel_runs_in_this_environment(
    tmp_path: Path, seeknal_kernel: str
) -> None:
    running = Kernel(tmp_path, seeknal_kernel)
    try:
        shown = running.run_ok("import sys\nsys.prefix")
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
    running.run_ok(
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
    """The overall bar's updates arrive before the cell's reply: at least one
    while ``slow`` runs (the fraud nodes done, 15 at most) and one while
    ``slower``, which reads it, runs (16), then the end (17)."""
    kernel.run_ok(
        "%%seeknal_node transform slow\n"
        "SELECT sum(hash(range) % 1000) AS total FROM range(600000000)"
    )
    kernel.run_ok(
        "%%seeknal_node transform slower --inputs slow\n"
        "SELECT total + (SELECT sum(hash(range) % 7) FROM range(600000000)) AS total "
        "FROM slow"
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
    assert values[-1][1] == 17
    assert len({value for _, value in values}) >= 3
    assert values[0][1] <= 15
    assert all(at < replied for at, _ in values)
    (panel,) = [m for _, m in messages if m["msg_type"] == "display_data"]
    assert WIDGET_VIEW in panel["content"]["data"]
    (summary,) = [m for _, m in messages if m["msg_type"] == "update_display_data"]
    assert summary["content"]["transient"] == panel["content"]["transient"]
    assert sorted(summary["content"]["data"]) == ["text/html", "text/plain"]
    assert (
        "Run succeeded: 17 executed, 0 cached of 17 nodes"
        in summary["content"]["data"]["text/html"]
    )
    assert (
        summary["content"]["data"]["text/plain"]
        .splitlines()[-1]
        .startswith("Run succeeded: 17 executed, 0 cached of 17 nodes")
    )
    assert not [m for _, m in messages if m["msg_type"] == "execute_result"]


def test_the_cancel_button_stops_a_running_cell(kernel: Kernel) -> None:
    kernel.run_ok(
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

    messages = kernel.messages(msg_id)
    _, reply = kernel.reply(msg_id)

    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "RunFailed"
    (error,) = [m["content"] for _, m in messages if m["msg_type"] == "error"]
    assert len(error["traceback"]) == 1
    assert re.fullmatch(
        r"RunFailed: Run cancelled: .*\d+ cancelled of 16 nodes in [\d.]+s; "
        r"the next run resumes",
        error["traceback"][0],
    )
    (summary,) = [
        m["content"]["data"]["text/html"]
        for _, m in messages
        if m["msg_type"] in ("display_data", "update_display_data")
        and "text/html" in m["content"]["data"]
    ]
    assert "transform.endless: interrupted while running" in summary
    button_states = [
        m["content"]["data"]["state"]
        for _, m in messages
        if m["msg_type"] == "comm_msg"
        and m["content"]["comm_id"] == button
        and m["content"]["data"].get("method") == "update"
    ]
    descriptions = [s["description"] for s in button_states if "description" in s]
    assert descriptions[0] == "Cancelling…"
    assert descriptions[-1] == "Cancelled"
    assert [s["disabled"] for s in button_states if "disabled" in s][-1] is True

    later = [m for _, m in kernel.messages(queued)]
    _, answer = kernel.reply(queued)
    assert answer["content"]["status"] == "aborted" or any(
        m["msg_type"] == "execute_result" and m["content"]["data"]["text/plain"] == "42"
        for m in later
    )
    assert [
        m["content"]["data"]["text/plain"]
        for m in kernel.run_ok("6 * 7")
        if m["msg_type"] == "execute_result"
    ] == ["42"]


@pytest.mark.parametrize(
    "cell", ["r = %seeknal run --parallel", "%seeknal run --parallel;"]
)
def test_an_assigned_or_hidden_run_still_shows_its_summary_once(
    kernel: Kernel, cell: str
) -> None:
    messages = kernel.run_ok(cell)

    shown = [m for m in messages if m["msg_type"].endswith(("display_data", "result"))]
    assert [m["msg_type"] for m in shown] == ["display_data", "update_display_data"]
    summary = shown[-1]["content"]["data"]
    assert sorted(summary) == ["text/html", "text/plain"]
    assert "Run succeeded: 15 executed, 0 cached of 15 nodes" in summary["text/html"]
    assert summary["text/html"].count(">SUCCESS<") == 15

    if cell.startswith("r ="):
        later = kernel.run_ok("r")
        (again,) = [m for m in later if m["msg_type"] == "display_data"]
        assert again["content"]["data"]["text/html"] == summary["text/html"]
        assert again["content"]["data"]["text/plain"].startswith("<RunResult Run ")


def test_binder_environment_runs_the_notebooks(
    tmp_path: Path, kernelspec: Callable[[Path, str], str], seeknal_kernel: str
) -> None:
    """A fresh virtual environment from binder/ alone runs the notebooks."""
    assert SpecifierSet(requires_python()).contains(binder_python())
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

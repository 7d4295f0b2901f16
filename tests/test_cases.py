"""The handed cases (tests/cases/C*, copied from shared/cases) as regression tests.

Each test lays a case out as a project in a temporary folder (`seeknal/nodes.yml`
plus `data/`) and asserts the result the case's README calls correct; its docstring
names the case and the README bullet it asserts. The cases run through the Python
API, the `seeknal` command line in a new process, a real IPython shell with the
extension loaded, and real kernels.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import functools
import hashlib
import html
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import duckdb
import ipywidgets
import nbformat
import pytest
from IPython.core.error import UsageError as IPythonUsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.testing.globalipapp import start_ipython
from IPython.utils.capture import CapturedIO, capture_output
from kernels import Kernel
from nbclient import NotebookClient

from seeknal_jupyter import environments, execute
from seeknal_jupyter.dag import build_dag
from seeknal_jupyter.errors import ProjectError, RunFailed, UsageError
from seeknal_jupyter.loader import NAME_PATTERN, Node
from seeknal_jupyter.project import Project
from seeknal_jupyter.report import RunResult, TextReporter
from seeknal_jupyter.store import TEMP_SUFFIX

CASES = Path(__file__).parent / "cases"
REPO = Path(__file__).parents[1]


def make_project(
    case: str, dest: Path, nodes_file: str = "nodes.yml", sub: str = ""
) -> Path:
    """Copy a case into ``dest`` as a project; ``sub`` names a C13 sub-project."""
    source = CASES / case
    shutil.copytree(source / "data", dest / "data")
    root = dest / sub if sub else dest
    (root / "seeknal").mkdir(parents=True)
    shutil.copy(source / sub / nodes_file, root / "seeknal" / "nodes.yml")
    return root


def replace_sql(root: Path, name: str, sql: str) -> None:
    """Give node ``name`` of ``seeknal/nodes.yml`` a new ``transform`` body."""
    path = root / "seeknal" / "nodes.yml"
    documents = path.read_text().split("\n---\n")
    named = re.compile(rf"^name: {re.escape(name)}\s*(#.*)?$", re.MULTILINE)
    block = "transform: |\n" + "".join(f"  {line}\n" for line in sql.splitlines())
    for i, document in enumerate(documents):
        if named.search(document):
            head = document[: document.index("transform: |")]
            documents[i] = head + block
    path.write_text("\n---\n".join(documents))


def drop_nodes(root: Path, names: set[str]) -> None:
    """Remove the documents of the named nodes from ``seeknal/nodes.yml``."""
    path = root / "seeknal" / "nodes.yml"
    kept = []
    for document in path.read_text().split("\n---\n"):
        found = re.search(r"^name: (.+?)\s*(#.*)?$", document, re.MULTILINE)
        name = found.group(1).strip("'") if found else None
        if name not in names:
            kept.append(document)
    path.write_text("\n---\n".join(kept))


def rows(project: Project, node: str, order: str = "ALL") -> list[tuple[Any, ...]]:
    path = project.output_path(node)
    with duckdb.connect() as conn:
        return conn.execute(
            f"SELECT * FROM read_parquet('{path}') ORDER BY {order}"
        ).fetchall()


def parquet_types(path: Path) -> list[tuple[str, str]]:
    with duckdb.connect() as conn:
        described = conn.execute(f"DESCRIBE SELECT * FROM read_parquet('{path}')")
        return [(r[0], r[1]) for r in described.fetchall()]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_failed(project: Project, **options: Any) -> RunResult:
    with pytest.raises(RunFailed) as failure:
        project.run(**options)
    return failure.value.result


def assert_target_files_sound(target: Path) -> None:
    """No temporary file is left, and every ``*.parquet`` opens as Parquet."""
    assert not [p for p in target.rglob(f"*{TEMP_SUFFIX}")]
    with duckdb.connect() as conn:
        for path in target.rglob("*.parquet"):
            conn.execute(f"SELECT COUNT(*) FROM read_parquet('{path}')").fetchone()


def seeknal_cli(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    merge_stderr: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run the ``seeknal`` command line in a new process; it must end in 2 minutes."""
    return subprocess.run(
        [sys.executable, "-m", "seeknal_jupyter", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        env=env,
    )


@contextlib.contextmanager
def sigint_not_ignored() -> Iterator[None]:
    """Processes started inside get SIGINT's default action, so Python turns it
    into KeyboardInterrupt there, even when this process was started with SIGINT
    ignored (as a background job of a script is)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """IPython's test shell (a real InteractiveShell) with the extension loaded."""
    start_ipython()
    ip = InteractiveShell.instance()
    monkeypatch.chdir(tmp_path)
    ip.run_line_magic("load_ext", "seeknal_jupyter")
    yield ip
    ip.run_line_magic("unload_ext", "seeknal_jupyter")
    ip.config.pop("SeeknalMagics", None)


def shell_cell(ip: Any, code: str) -> tuple[Any, CapturedIO]:
    """Run a cell in the shell; return its ExecutionResult and what it showed."""
    with capture_output() as shown:
        result = ip.run_cell(code)
    return result, shown


def shown_html(messages: list[dict[str, Any]]) -> str:
    """The HTML that a kernel displayed for a request (the run summary), unescaped."""
    return html.unescape(
        "".join(
            m["content"]["data"]["text/html"]
            for m in messages
            if m["msg_type"]
            in ("display_data", "update_display_data", "execute_result")
            and "text/html" in m["content"]["data"]
        )
    )


def parquet_files(target: Path) -> set[str]:
    """Every file under ``target`` that a ``*.parquet`` glob matches."""
    return {p.relative_to(target).as_posix() for p in target.rglob("*.parquet")}


def listing(folder: Path, skip: Path | None = None) -> set[str]:
    """Every path under ``folder`` (symbolic links not followed), minus ``skip``'s."""
    found = set()
    for path in folder.rglob("*"):
        if skip is not None and path.is_relative_to(skip):
            continue
        found.add(path.relative_to(folder).as_posix())
    return found


# C01: worker threads must not share one DuckDB connection

C01_NODES = ["source.events"] + [f"transform.agg_g{i}" for i in range(1, 9)]
C01_NODES.append("transform.all_groups")


def c01_expected() -> dict[str, tuple[str, int, int]]:
    with open(CASES / "C01" / "expected.csv", newline="") as handle:
        return {
            f"transform.{r['node']}": (
                r["group_id"],
                int(r["total_amount"]),
                int(r["row_count"]),
            )
            for r in csv.DictReader(handle)
        }


def c01_outputs(root: Path) -> dict[str, Path]:
    state = Project(root).store.load_state("prod")
    return {n: root / "target" / state.entries[n].snapshot for n in C01_NODES}


def c01_assert_values(outputs: dict[str, Path]) -> None:
    with duckdb.connect() as conn:
        for node, expected in c01_expected().items():
            found = conn.execute(f"SELECT * FROM read_parquet('{outputs[node]}')")
            assert found.fetchall() == [expected], node
        events = conn.execute(
            f"SELECT event_id, amount FROM read_parquet('{outputs['source.events']}')"
        ).fetchall()
    assert len(events) == 40
    assert all(amount == event_id for event_id, amount in events)


def c01_output_bytes(outputs: dict[str, Path]) -> dict[str, bytes]:
    return {n: path.read_bytes() for n, path in outputs.items()}


class ConnectionLog:
    """Records which thread built which node on which DuckDB connection."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.created: list[tuple[int, int]] = []
        self.threads: list[int] = []
        self.used: list[tuple[int, str, int, str]] = []
        self.lock = threading.Lock()
        self.keep: list[duckdb.DuckDBPyConnection] = []
        original_build = execute.build
        original_open = execute.open_connection

        def opened(settings: execute.Settings) -> duckdb.DuckDBPyConnection:
            conn = original_open(settings)
            threads = conn.execute("SELECT current_setting('threads')").fetchone()
            with self.lock:
                self.keep.append(conn)
                self.created.append((threading.get_ident(), id(conn)))
                self.threads.append(threads[0] if threads else 0)
            return conn

        def build(conn: duckdb.DuckDBPyConnection, task: execute.Task) -> Any:
            thread = threading.current_thread()
            with self.lock:
                self.used.append(
                    (thread.ident or 0, thread.name, id(conn), task.node_id)
                )
            return original_build(conn, task)

        def forbidden(*_: Any, **__: Any) -> None:
            raise AssertionError("a worker used the module-level duckdb connection")

        monkeypatch.setattr(execute, "open_connection", opened)
        monkeypatch.setattr(execute, "build", build)
        monkeypatch.setattr(duckdb, "sql", forbidden)
        monkeypatch.setattr(duckdb, "execute", forbidden)

    def reset(self) -> None:
        self.created.clear()
        self.threads.clear()
        self.used.clear()
        self.keep.clear()


def test_c01_parallel_runs_equal_expected_and_sequential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """C01, "Correct result" and its implementation note: 20 runs with 8 workers
    through ``Project.run`` all succeed with the rows of expected.csv and outputs
    byte-identical to a 1-worker run; each worker thread builds on one connection
    of its own, made on that thread and single-threaded (so the outputs cannot
    depend on how DuckDB's threads interleave), and no worker calls ``duckdb.sql``
    or ``duckdb.execute``.
    """
    root = make_project("C01", tmp_path)
    project = Project(root)
    project.run(max_workers=1)
    c01_assert_values(c01_outputs(root))
    sequential = c01_output_bytes(c01_outputs(root))
    log = ConnectionLog(monkeypatch)
    threads_seen: set[str] = set()

    for _ in range(20):
        log.reset()
        result = project.run(max_workers=8, full=True)

        assert result.statuses() == {n: "success" for n in C01_NODES}
        outputs = c01_outputs(root)
        c01_assert_values(outputs)
        assert c01_output_bytes(outputs) == sequential
        worker_conns = {(t, c) for t, _, c, _ in log.used}
        threads = {t for t, _ in worker_conns}
        conns = {c for _, c in worker_conns}
        assert len(worker_conns) == len(threads) == len(conns)
        assert worker_conns <= set(log.created)
        assert len(log.created) == len(threads) <= 8
        assert log.threads == [1] * len(log.created)
        assert {name.split("_")[0] for _, name, _, _ in log.used} == {"seeknal-worker"}
        assert sorted(n for *_, n in log.used) == sorted(C01_NODES)
        threads_seen |= {name for _, name, _, _ in log.used}
    assert len(threads_seen) > 1


def test_c01_fresh_process_run(tmp_path: Path) -> None:
    """C01, "What to run" 2 ("then once in a new kernel"), as a new process:
    ``seeknal run --max-workers 8 --full`` succeeds with the rows of expected.csv.
    """
    root = make_project("C01", tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "seeknal_jupyter", "run", "--max-workers", "8"]
        + ["--full", "--project", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Run succeeded: 10 executed, 0 cached of 10 nodes" in done.stdout
    c01_assert_values(c01_outputs(root))


C01_FORBIDDEN = (
    "connection is busy",
    "ResourceInUseException",
    "Attempting to execute an unsuccessful or closed pending query result",
    "DuckDB objects created in a thread can only be used in that same thread",
    "Could not allocate tuple object",
    "Traceback",
)
C01_PARALLEL = "%seeknal run --parallel --max-workers 8 --full"


def c01_digests(root: Path) -> dict[str, str]:
    """SHA-256 of each node's current Parquet output."""
    return {node: sha256(path) for node, path in c01_outputs(root).items()}


def c01_assert_clean(text: str) -> None:
    for forbidden in C01_FORBIDDEN:
        assert forbidden not in text, text


def notebook_outputs(folder: Path, kernel: str, cells: list[str]) -> list[Any]:
    """Execute a notebook of ``cells`` in a new kernel; return every cell output."""
    notebook = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(source) for source in cells]
    )
    NotebookClient(
        notebook,
        kernel_name=kernel,
        timeout=120,
        resources={"metadata": {"path": str(folder)}},
    ).execute()
    return [output for cell in notebook.cells for output in cell.outputs]


def test_c01_twenty_runs_in_one_shell_then_one_in_a_new_kernel(
    tmp_path: Path, shell: Any, seeknal_kernel: str
) -> None:
    """C01, "What to run" 1-3 with "Correct result": 20 runs with 8 workers in the
    same kernel (a real IPython shell with the extension), then one in a new kernel
    (nbclient); every run succeeds, every node equals expected.csv, none of the
    forbidden messages appears, and the outputs are byte-identical to a 1-worker run.
    """
    root = make_project("C01", tmp_path / "c01")
    shell_cell(shell, f"%seeknal project {root}")
    result, shown = shell_cell(shell, "%seeknal run --full")
    assert result.error_in_exec is None
    assert "full, 1 worker: 10 to run, 0 cached" in shown.stdout
    c01_assert_values(c01_outputs(root))
    sequential = c01_digests(root)

    for _ in range(20):
        result, shown = shell_cell(shell, C01_PARALLEL)

        assert result.error_in_exec is None, shown.stdout + shown.stderr
        c01_assert_clean(shown.stdout + shown.stderr)
        assert "full, 8 workers: 10 to run, 0 cached" in shown.stdout
        assert "Run succeeded: 10 executed, 0 cached of 10 nodes" in shown.stdout
        c01_assert_values(c01_outputs(root))
        assert c01_digests(root) == sequential

    outputs = notebook_outputs(
        tmp_path,
        seeknal_kernel,
        ["%load_ext seeknal_jupyter", f"%seeknal project {root}", C01_PARALLEL],
    )
    assert [o for o in outputs if o.output_type == "error"] == []
    c01_assert_clean(json.dumps(outputs))
    summary = [o.data["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert len(summary) == 1
    assert "Run succeeded: 10 executed, 0 cached of 10 nodes" in summary[0]
    assert "workers: <b>8</b>" in summary[0]
    c01_assert_values(c01_outputs(root))
    assert c01_digests(root) == sequential


# C04: a failed or interrupted write keeps the earlier Parquet output intact

C04_V2 = (CASES / "C04" / "readings_clean_v2.sql").read_text()
C04_CACHE = Path("target/cache/transform/readings_clean.parquet")


def c04_step1(tmp_path: Path) -> tuple[Path, str]:
    root = make_project("C04", tmp_path, "nodes_v1.yml")
    project = Project(root)
    project.run()
    assert rows(project, "sensor_totals") == [("s1", 22), ("s2", 16), ("s3", 4)]
    assert len(rows(project, "readings_clean")) == 5
    return root, sha256(root / C04_CACHE)


def c04_assert_v1_output_kept(root: Path, digest: str) -> None:
    cache = root / C04_CACHE
    assert sha256(cache) == digest
    with duckdb.connect() as conn:
        count = conn.execute(f"SELECT COUNT(*) FROM read_parquet('{cache}')")
        assert count.fetchone() == (5,)


def test_c04_failed_rewrite_keeps_earlier_output(tmp_path: Path) -> None:
    """C04, "Correct result": step 2 fails naming readings_clean and the conversion
    error, sensor_totals is skipped, the step-1 file keeps its SHA-256 and 5 rows,
    nothing is written under v2's name and no temporary file stays.
    """
    root, digest = c04_step1(tmp_path)
    replace_sql(root, "readings_clean", C04_V2)
    project = Project(root)
    new_fingerprint = project.plan().fingerprints["transform.readings_clean"]

    result = run_failed(project)

    failed = result.nodes["transform.readings_clean"]
    assert failed.status == "failed"
    assert "transform.readings_clean" in str(failed.error)
    assert "Conversion Error" in str(failed.error)
    assert result.nodes["transform.sensor_totals"].status == "skipped"
    assert result.nodes["source.readings"].status == "cached"
    c04_assert_v1_output_kept(root, digest)
    assert not project.store.snapshot_path(
        "transform.readings_clean", new_fingerprint
    ).exists()
    assert_target_files_sound(root / "target")


def test_c04_killed_run_leaves_only_whole_files(tmp_path: Path) -> None:
    """C04, "What to run" 3 (variant A, "or kill the worker process"): SIGKILL
    while readings_clean writes; the step-1 file is intact, every ``*.parquet``
    opens, and the next run executes readings_clean again and removes the
    temporary file.
    """
    root, digest = c04_step1(tmp_path)
    replace_sql(root, "readings_clean", C04_V2)
    snapshots = root / "target" / "snapshots" / "transform" / "readings_clean"
    run = subprocess.Popen(
        [sys.executable, "-m", "seeknal_jupyter", "run", "--project", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        partial = None
        deadline = time.monotonic() + 60
        while partial is None and run.poll() is None and time.monotonic() < deadline:
            partial = next(snapshots.glob(f"*{TEMP_SUFFIX}"), None)
            time.sleep(0.001)
        run.send_signal(signal.SIGKILL)
    finally:
        run.wait(10)
    assert partial is not None, "the run ended before readings_clean started writing"

    c04_assert_v1_output_kept(root, digest)
    with duckdb.connect() as conn:
        for path in (root / "target").rglob("*.parquet"):
            conn.execute(f"SELECT COUNT(*) FROM read_parquet('{path}')").fetchone()

    result = run_failed(Project(root))
    assert result.nodes["transform.readings_clean"].status == "failed"
    assert result.nodes["transform.sensor_totals"].status == "skipped"
    c04_assert_v1_output_kept(root, digest)
    assert_target_files_sound(root / "target")


C04_PARTIALS = Path("target/snapshots/transform/readings_clean")
C04_ATTEMPTS = 5
C04_CANCELLED = "Run cancelled: 0 executed, 1 cached, 2 cancelled of 3 nodes"


def c04_wait_for_partial(root: Path, running: Callable[[], bool]) -> Path | None:
    """The temporary file of readings_clean's write, once it appears."""
    folder = root / C04_PARTIALS
    deadline = time.monotonic() + 60
    while running() and time.monotonic() < deadline:
        partial = next(folder.glob(f"*{TEMP_SUFFIX}"), None)
        if partial is not None:
            return partial
        time.sleep(0.001)
    return None


def running(process: subprocess.Popen[str]) -> bool:
    return process.poll() is None


def c04_assert_interrupted_cleanly(root: Path, digest: str, finals: set[str]) -> None:
    """After an interrupt: the v1 output is intact, only final files match
    ``*.parquet`` and each opens, and readings_clean is still to be run."""
    c04_assert_v1_output_kept(root, digest)
    assert parquet_files(root / "target") == finals
    with duckdb.connect() as conn:
        for name in finals:
            path = root / "target" / name
            conn.execute(f"SELECT COUNT(*) FROM read_parquet('{path}')").fetchone()
    assert Project(root).execution_plan().to_run == [
        "transform.readings_clean",
        "transform.sensor_totals",
    ]


def c04_assert_next_run_executes_readings_clean(summary: str, root: Path) -> None:
    """The run after the interrupt executed readings_clean again (and v2 fails at
    its CAST), skipped sensor_totals, and left no temporary file."""
    failed = "transform.readings_clean (seeknal/nodes.yml:10) failed: Conversion Error"
    assert f"{failed}: Could not convert string 'x" in summary
    assert "transform.sensor_totals: upstream transform.readings_clean failed" in (
        summary
    )
    assert not [p for p in (root / "target").rglob(f"*{TEMP_SUFFIX}")]


def test_c04_sigint_to_a_cli_run_keeps_earlier_output(tmp_path: Path) -> None:
    """C04, "What to run" 3 (variant A) with its "Correct result": SIGINT to a
    ``seeknal run`` process while readings_clean's v2 query writes; it exits 130,
    the step-1 file keeps its SHA-256 and 5 rows, every final ``*.parquet`` opens and
    no other file matches ``*.parquet``; the next run executes readings_clean again
    and leaves no temporary file.

    The v2 query fails by itself about 0.25 s after its write starts; an attempt
    whose interrupt came after that failure (exit 1) is made again.
    """
    root, digest = c04_step1(tmp_path)
    finals = parquet_files(root / "target")
    replace_sql(root, "readings_clean", C04_V2)
    command = [sys.executable, "-m", "seeknal_jupyter", "run", "--project", str(root)]
    for _ in range(C04_ATTEMPTS):
        with sigint_not_ignored():
            run = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        partial = c04_wait_for_partial(root, functools.partial(running, run))
        if partial is not None:
            run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=60)
        assert partial is not None, "the run ended before readings_clean wrote"
        if run.returncode != 1:
            break
        assert "Conversion Error" in out
    else:
        raise AssertionError("every SIGINT came after readings_clean had failed")

    assert run.returncode == 130, out + err
    assert "transform.readings_clean: interrupted while running" in out
    assert C04_CANCELLED in out
    assert [line for line in err.splitlines() if not line.startswith("warning:")] == [
        (
            "Stopping: no new node starts and running queries are interrupted "
            "(Ctrl-C again to abort at once)"
        ),
        "Interrupted: what finished is kept; the next run resumes from there.",
    ]
    c04_assert_interrupted_cleanly(root, digest, finals)

    again = seeknal_cli("run", "--project", str(root))

    assert again.returncode == 1, again.stdout + again.stderr
    c04_assert_next_run_executes_readings_clean(again.stdout, root)
    c04_assert_v1_output_kept(root, digest)


def test_c04_kernel_interrupt_during_the_run_magic_keeps_earlier_output(
    tmp_path: Path, seeknal_kernel: str
) -> None:
    """C04, "What to run" 3 (variant A) with its "Correct result": a kernel
    interrupt (KernelManager.interrupt_kernel) during ``%seeknal run`` while
    readings_clean's v2 query writes, then a new kernel; the step-1 file keeps its
    SHA-256 and 5 rows, every final ``*.parquet`` opens and no other file matches
    ``*.parquet``; the new kernel's run executes readings_clean again and leaves no
    temporary file.

    An attempt whose interrupt came after v2 had failed by itself is made again.
    """
    root, digest = c04_step1(tmp_path)
    finals = parquet_files(root / "target")
    replace_sql(root, "readings_clean", C04_V2)
    setup = f"%load_ext seeknal_jupyter\n%seeknal project {root}"
    kernel = Kernel(tmp_path, seeknal_kernel)
    try:
        assert kernel.run(setup)[0]["status"] == "ok"
        for _ in range(C04_ATTEMPTS):
            msg_id = kernel.send("%seeknal run")
            partial = c04_wait_for_partial(root, lambda: not kernel.replied())
            if partial is not None:
                kernel.manager.interrupt_kernel()
            reply, messages = kernel.finish(msg_id)
            assert partial is not None, "the run ended before readings_clean wrote"
            if "cancelled" in reply.get("evalue", ""):
                break
            assert "Conversion Error" in shown_html(messages)
        else:
            raise AssertionError("every interrupt came after readings_clean had failed")
    finally:
        kernel.close()

    assert (reply["status"], reply["ename"]) == ("error", "RunFailed")
    assert reply["evalue"].startswith(C04_CANCELLED)
    assert reply["evalue"].endswith("s; the next run resumes")
    assert "transform.readings_clean: interrupted while running" in shown_html(messages)
    c04_assert_interrupted_cleanly(root, digest, finals)

    kernel = Kernel(tmp_path, seeknal_kernel)
    try:
        assert kernel.run(setup)[0]["status"] == "ok"
        reply, messages = kernel.run("%seeknal run")
    finally:
        kernel.close()

    assert (reply["status"], reply["ename"]) == ("error", "RunFailed")
    assert reply["evalue"].startswith(
        "Run FAILED: 1 executed (1 failed), 1 cached, 1 skipped of 3"
    )
    c04_assert_next_run_executes_readings_clean(shown_html(messages), root)
    c04_assert_v1_output_kept(root, digest)


def test_c04_failed_first_write_creates_nothing(tmp_path: Path) -> None:
    """C04, "What to run" 4 (variant B): with no earlier output, the failed write
    creates no file under the final name and leaves no temporary file.
    """
    root, _ = c04_step1(tmp_path)
    shutil.rmtree(root / "target")
    replace_sql(root, "readings_clean", C04_V2)

    result = run_failed(Project(root))

    assert result.statuses() == {
        "source.readings": "success",
        "transform.readings_clean": "failed",
        "transform.sensor_totals": "skipped",
    }
    assert not (root / C04_CACHE).exists()
    snapshots = root / "target" / "snapshots" / "transform"
    assert not [p for p in snapshots.rglob("*") if p.is_file()]
    assert_target_files_sound(root / "target")


def test_c04_an_output_damaged_outside_seeknal_is_named_then_rebuilt(
    tmp_path: Path,
) -> None:
    """A C04 variant: the step-1 output cut to half by another tool. ``show``
    names the node, the file and both sizes in one line (no DuckDB traceback), and
    the next run builds exactly that node again, back to its 5 rows."""
    root, digest = c04_step1(tmp_path)
    entry = Project(root).store.load_state("prod").entries["transform.readings_clean"]
    file = f"target/{entry.snapshot}"
    size = (root / file).stat().st_size
    os.truncate(root / file, size // 2)

    with pytest.raises(UsageError) as error:
        Project(root).show("readings_clean")

    assert str(error.value) == (
        f"transform.readings_clean's output cannot be read: its file {file} has "
        f"{size // 2} bytes, {size} were written; build it again: seeknal run "
        "--nodes readings_clean"
    )
    result = Project(root).run()
    assert {n for n, s in result.statuses().items() if s != "cached"} == {
        "transform.readings_clean"
    }
    c04_assert_v1_output_kept(root, digest)


# C13: cycles, self references and references found only in comments

C13_CYCLE = (
    "transform.step_a -> transform.step_c -> transform.step_b -> transform.step_a"
)


def test_c13_cycle_is_named_once_and_nothing_runs(tmp_path: Path) -> None:
    """C13, "Correct result", ``cycle``: planning and running fail before any node
    executes (``independent`` included), naming the whole cycle once, in order.
    """
    root = make_project("C13", tmp_path, sub="cycle")
    project = Project(root)

    for attempt in (project.plan, project.run):
        with pytest.raises(ProjectError) as error:
            attempt()
        message = str(error.value)
        assert message.count(C13_CYCLE) == 1
        assert "Cycle detected" in message
        assert "seeknal/nodes.yml" in message
    assert not (root / "target" / "snapshots").exists()
    assert not (root / "target" / "cache").exists()


def test_c13_self_reference_is_rejected(tmp_path: Path) -> None:
    """C13, "Correct result", ``selfref``: the run fails with "lists itself as an
    input", naming the file and line, and nothing is created.
    """
    root = make_project("C13", tmp_path, sub="selfref")

    with pytest.raises(ProjectError) as error:
        Project(root).run()

    assert "transform.running_total lists itself as an input" in str(error.value)
    assert "seeknal/nodes.yml:11" in str(error.value)
    assert not (root / "target").exists()


C13_PROBLEMS = {
    "cycle": f"seeknal/nodes.yml:7: Cycle detected: {C13_CYCLE} (",
    "selfref": (
        "seeknal/nodes.yml:11: transform.running_total: "
        "transform.running_total lists itself as an input ("
    ),
}


@pytest.mark.parametrize("sub", sorted(C13_PROBLEMS))
@pytest.mark.parametrize("output", [False, True], ids=["text", "svg"])
def test_c13_dag_command_fails_before_drawing(
    tmp_path: Path, sub: str, output: bool
) -> None:
    """C13, "Correct result" (cycle: "Rendering the DAG ... gives the same error. It
    must not loop forever"; selfref: "fails with a specific message"):
    ``seeknal dag`` and ``seeknal dag --output f.svg`` exit 2 with the one problem
    line, the whole cycle once and in order; no SVG, no target/ folder.
    """
    root = make_project("C13", tmp_path, sub=sub)
    svg = tmp_path / "f.svg"
    extra = ["--output", str(svg)] if output else []

    done = seeknal_cli("dag", "--project", str(root), *extra)

    assert done.returncode == 2
    assert done.stdout == ""
    head, problem = done.stderr.splitlines()
    assert head == "error: 1 problem in the project:"
    assert problem.startswith(f"  {C13_PROBLEMS[sub]}")
    assert problem.count("->") == (3 if sub == "cycle" else 0)
    assert not svg.exists()
    assert not (root / "target").exists()


@pytest.mark.parametrize("sub", sorted(C13_PROBLEMS))
def test_c13_dag_magic_fails_before_drawing(
    shell: Any, tmp_path: Path, sub: str
) -> None:
    """C13, "Correct result", rendering the DAG in a notebook: ``%seeknal dag`` and
    ``%seeknal dag --output f.svg`` in a real IPython shell raise a usage error with
    the one problem line (the whole cycle once, in order) and no traceback; no SVG,
    no target/ folder.
    """
    root = make_project("C13", tmp_path / "case", sub=sub)
    svg = tmp_path / "f.svg"

    for line in (f"dag --project {root}", f"dag --project {root} --output {svg}"):
        result, shown = shell_cell(shell, f"%seeknal {line}")

        assert isinstance(result.error_in_exec, IPythonUsageError)
        assert "Traceback" not in shown.stdout + shown.stderr
        head, problem = shown.stderr.splitlines()
        assert head == "UsageError: 1 problem in the project:"
        assert problem.startswith(f"  {C13_PROBLEMS[sub]}")
        assert not svg.exists()
        assert not (root / "target").exists()


def test_c13_references_in_comments_and_strings_do_not_count(
    tmp_path: Path,
) -> None:
    """C13, "Correct result", ``comment_ref``: ``doubled`` depends only on
    ``source.seed_numbers`` and returns its 3 rows.
    """
    root = make_project("C13", tmp_path, sub="comment_ref")
    project = Project(root)

    assert project.dag().nodes["transform.doubled"].inputs == ("source.seed_numbers",)
    project.run()

    assert rows(project, "doubled") == [
        (1, 2, "transform.doubled v2"),
        (2, 4, "transform.doubled v2"),
        (3, 6, "transform.doubled v2"),
    ]


def chain(length: int) -> dict[str, Node]:
    nodes = {"source.s": Node("source", "s", "chain.yml", 1, {})}
    for i in range(1, length):
        upstream = "source.s" if i == 1 else f"transform.t{i - 1:05d}"
        node = Node("transform", f"t{i:05d}", "chain.yml", i + 1, {}, (upstream,))
        nodes[node.id] = node
    return nodes


def with_input(nodes: dict[str, Node], node_id: str, extra: str) -> None:
    node = nodes[node_id]
    nodes[node_id] = Node(
        node.kind, node.name, node.file, node.line, {}, node.inputs + (extra,)
    )


@pytest.mark.parametrize(
    ("reader", "read", "cycle"),
    [
        (
            "transform.t04997",
            "transform.t04999",
            (
                "transform.t04997 -> transform.t04999 -> transform.t04998 "
                "-> transform.t04997"
            ),
        ),
        ("transform.t00001", "transform.t04999", None),
    ],
)
def test_c13_cycle_in_5000_nodes_is_named(
    reader: str, read: str, cycle: str | None
) -> None:
    """C13, "Correct result" ("Detecting a cycle must be linear in nodes plus
    edges"): a cycle at the end of a 5,000-node chain is found and named, and a
    cycle through the whole chain is named in full, without recursion limits.
    """
    nodes = chain(5000)
    with_input(nodes, reader, read)

    with pytest.raises(ProjectError) as error:
        build_dag(nodes)

    message = str(error.value)
    if cycle is None:
        assert message.count("transform.t") == 4999 + 1
        assert "transform.t00001 -> transform.t04999 -> transform.t04998" in message
    else:
        assert message.count(cycle) == 1


# C14: names that are keywords, hold spaces or quotes, inject SQL or escape target/

C14_BAD = {
    "weekly sales",
    "store's_stats",
    'x"; DROP TABLE sentinel; --',
    "../../outside",
}


def test_c14_bad_names_rejected_at_load(tmp_path: Path) -> None:
    """C14, "Correct result" ("reject at load time ... naming the offending node and
    the allowed pattern"): the four bad names are rejected before anything runs,
    each with its file and line, and nothing is created.
    """
    root = make_project("C14", tmp_path)

    with pytest.raises(ProjectError) as error:
        Project(root).run()

    message = str(error.value)
    for name in C14_BAD:
        assert f"name {name!r} is not allowed" in message
    assert NAME_PATTERN.pattern in message
    assert message.count("seeknal/nodes.yml:") == 4
    assert not (root / "target").exists()
    assert not (tmp_path.parent / "outside.parquet").exists()


def test_c14_reserved_words_work_once_bad_names_are_removed(tmp_path: Path) -> None:
    """C14, "Correct result" ("accept and quote"): ``order``, ``group`` and the
    columns ``select`` and ``group`` work; ``group`` returns (x, 2) and (y, 1);
    ``sentinel`` returns 42.
    """
    root = make_project("C14", tmp_path)
    drop_nodes(root, C14_BAD)
    project = Project(root)

    result = project.run(parallel=True)

    assert result.statuses() == {
        "source.order": "success",
        "transform.group": "success",
        "transform.sentinel": "success",
    }
    assert rows(project, "group") == [("x", 2), ("y", 1)]
    assert rows(project, "sentinel") == [(42,)]
    assert rows(project, "order") == [(1, "a", "x"), (2, "b", "x"), (3, "c", "y")]
    state = project.store.load_state("prod")
    columns = [c for c, _ in state.entries["source.order"].columns]
    assert columns == ["id", "select", "group"]


C14_VALID = ["source.order", "transform.group", "transform.sentinel"]
C14_RENAMED_GROUP = """SELECT "group" AS "select", COUNT(*) AS n FROM source."order"
GROUP BY "group" ORDER BY "group"
"""
C14_PICKED = """
---
kind: transform
name: picked
inputs:
  - ref: source.order
transform: |
  SELECT id, "select", "group" FROM source."order" WHERE "group" = 'x'
"""


class Outside:
    """Runs ``seeknal`` from a folder of its own with a TMPDIR of its own, and
    records everything under pytest's temporary tree apart from the project."""

    def __init__(self, tmp_path: Path, base: Path, root: Path) -> None:
        self.base, self.root = base, root
        self.cwd, self.tmp = tmp_path / "cwd", tmp_path / "tmp"
        self.cwd.mkdir()
        self.tmp.mkdir()
        self.env = os.environ | {"TMPDIR": str(self.tmp)}
        self.before = listing(base, skip=root)
        self.system_tmp = set(os.listdir(tempfile.gettempdir()))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return seeknal_cli(
            *args, "--project", str(self.root), cwd=self.cwd, env=self.env
        )

    def assert_nothing_written(self) -> None:
        assert listing(self.base, skip=self.root) == self.before
        assert list(self.cwd.iterdir()) == list(self.tmp.iterdir()) == []
        new = set(os.listdir(tempfile.gettempdir())) - self.system_tmp
        assert not [n for n in new if "outside" in n or n.endswith(".parquet")]
        inside = [p.relative_to(self.root).as_posix() for p in self.root.rglob("*")]
        assert not [p for p in inside if "outside" in p or "DROP" in p]


def test_c14_bad_names_rejected_by_the_command_line_before_anything_is_written(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """C14, "Correct result": "Or reject at load time, with a clear validation
    message naming the offending node and the allowed pattern", and
    "``../../outside`` is rejected ... No file may be written outside the project's
    cache directory": ``seeknal plan`` and ``seeknal run`` exit 2 naming each bad
    name with its file, line and the pattern; no target/ folder and nothing new
    anywhere in the temporary tree.
    """
    root = make_project("C14", tmp_path / "parent" / "c14")
    outside = Outside(tmp_path, tmp_path_factory.getbasetemp(), root)
    lines = {
        "weekly sales": 15,
        "store's_stats": 22,
        'x"; DROP TABLE sentinel; --': 34,
        "../../outside": 41,
    }

    for command in ("plan", "run"):
        done = outside.cli(command)

        assert done.returncode == 2
        assert done.stdout == ""
        head, *problems = done.stderr.splitlines()
        assert head == "error: 4 problems in the project:"
        assert [p.split(": name ")[0] for p in problems] == [
            f"  seeknal/nodes.yml:{line}" for line in lines.values()
        ]
        for name, problem in zip(lines, problems, strict=True):
            assert f"name {name!r} is not allowed" in problem
            assert f"(pattern {NAME_PATTERN.pattern})" in problem
        assert not (root / "target").exists()
    outside.assert_nothing_written()


def test_c14_valid_nodes_write_nothing_outside_the_project(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """C14, "Correct result": "No file may be written outside the project's cache
    directory" and "``sentinel`` still exists and returns 42": with the rejected
    nodes removed, ``seeknal run --parallel``, ``seeknal plan dev``, ``seeknal run
    --env dev`` and ``seeknal dag --output`` write only inside the project, and
    nothing named after ``outside`` or the injection appears.
    """
    root = make_project("C14", tmp_path / "parent" / "c14")
    drop_nodes(root, C14_BAD)
    outside = Outside(tmp_path, tmp_path_factory.getbasetemp(), root)

    ran = outside.cli("run", "--parallel")
    replace_sql(root, "group", C14_RENAMED_GROUP)
    planned = outside.cli("plan", "dev")
    applied = outside.cli("run", "--env", "dev")
    drawn = outside.cli("dag", "--output", str(root / "dag.svg"))

    assert [d.returncode for d in (ran, planned, applied, drawn)] == [0, 0, 0, 0]
    assert "Run succeeded: 3 executed, 0 cached of 3 nodes" in ran.stdout
    assert rows(Project(root), "sentinel") == [(42,)]
    outside.assert_nothing_written()


def worker_catalog(conn: duckdb.DuckDBPyConnection) -> dict[str, list[Any]]:
    """The user-made objects of a DuckDB connection's catalog."""
    queries = {
        "schemas": "SELECT schema_name FROM duckdb_schemas() WHERE NOT internal",
        "views": "SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal",
        "tables": "SELECT schema_name, table_name FROM duckdb_tables()",
        "macros": "SELECT schema_name, function_name FROM duckdb_functions() "
        "WHERE NOT internal",
    }
    return {k: conn.execute(f"{q} ORDER BY ALL").fetchall() for k, q in queries.items()}


def test_c14_a_worker_connection_keeps_no_views_or_tables(tmp_path: Path) -> None:
    """C14, "What to run" 2 ("look at ... the DuckDB catalog (views and tables)
    afterwards"): one worker connection (``execute.open_connection``, as each worker
    thread makes) builds every valid node in turn through ``execute.build``, as a
    worker does; after each node its catalog is what it was when new, and the
    outputs are right.
    """
    root = make_project("C14", tmp_path / "c14")
    drop_nodes(root, C14_BAD)
    dag = Project(root).dag()
    conn = execute.open_connection(execute.Settings.for_machine())
    fresh = worker_catalog(conn)
    built: dict[str, Path] = {}

    for node_id in dag.order:
        node = dag.nodes[node_id]
        task = execute.Task(
            node,
            "check",
            dag.layer[node_id],
            tmp_path / "built" / f"{node_id}.parquet",
            root,
            inputs={i: built[i] for i in node.inputs},
        )
        execute.build(conn, task)
        built[node_id] = task.snapshot

        assert worker_catalog(conn) == fresh, node_id
    conn.close()

    assert sorted(built) == C14_VALID
    assert ("source",) in fresh["schemas"] and ("transform",) in fresh["schemas"]
    assert fresh["views"] == fresh["tables"] == []
    with duckdb.connect() as check:
        found = check.execute(
            f"SELECT * FROM read_parquet('{built['transform.group']}') ORDER BY ALL"
        )
        assert found.fetchall() == [("x", 2), ("y", 1)]


def parquet_columns(path: Path) -> list[str]:
    return [name for name, _ in parquet_types(path)]


def test_c14_reserved_column_names_reach_outputs_and_plan_diffs(tmp_path: Path) -> None:
    """C14, "Correct result": "Source columns ``select`` and ``group`` are usable in
    downstream SQL when quoted, and are listed correctly in schema and plan
    output" and "Every generated identifier is double-quoted": a rename of
    ``group`` to ``select`` and a new node reading both columns are classified by
    ``seeknal plan dev`` (command line and Python) with those names, and applied;
    the outputs' Parquet schemas carry the names.
    """
    root = make_project("C14", tmp_path / "c14")
    drop_nodes(root, C14_BAD)
    Project(root).run(parallel=True)
    replace_sql(root, "group", C14_RENAMED_GROUP)
    with open(root / "seeknal" / "nodes.yml", "a") as nodes:
        nodes.write(C14_PICKED)

    planned = seeknal_cli("plan", "dev", "--project", str(root))

    assert planned.returncode == 0, planned.stderr
    assert "BREAKING (1):\n  - transform.group (column group renamed to select)\n" in (
        planned.stdout
    )
    assert "ADDED (1):\n  - transform.picked (new node)\n" in planned.stdout
    project = Project(root)
    plan = environments.plan(project, "dev")
    assert plan.classes() == {
        "source.order": "UNCHANGED",
        "transform.sentinel": "UNCHANGED",
        "transform.group": "BREAKING",
        "transform.picked": "ADDED",
    }
    assert plan.changes["transform.group"].reasons == ["column group renamed to select"]
    environments.apply(project, "dev")
    group = project.output_path("group", env="dev")
    picked = project.output_path("picked", env="dev")
    assert parquet_columns(project.output_path("order")) == ["id", "select", "group"]
    assert parquet_columns(group) == ["select", "n"]
    assert parquet_columns(picked) == ["id", "select", "group"]
    assert rows(project, "order") == [(1, "a", "x"), (2, "b", "x"), (3, "c", "y")]
    with duckdb.connect() as conn:
        assert conn.execute(
            f"SELECT * FROM read_parquet('{group}') ORDER BY ALL"
        ).fetchall() == [("x", 2), ("y", 1)]
        assert conn.execute(
            f"SELECT * FROM read_parquet('{picked}') ORDER BY ALL"
        ).fetchall() == [(1, "a", "x"), (2, "b", "x")]
    state = project.store.load_state("dev")
    assert state.entries["transform.picked"].columns == [
        ["id", "BIGINT"],
        ["select", "VARCHAR"],
        ["group", "VARCHAR"],
    ]


def test_c14_dag_of_the_valid_nodes_renders_with_their_names(tmp_path: Path) -> None:
    """C14, "What to run" 1 ("Render the DAG") with "everywhere it uses the name in
    ... a DOT id": with the rejected nodes removed, ``seeknal dag --output`` writes
    an SVG whose nodes are ``source.order``, ``transform.group`` and
    ``transform.sentinel``, labelled with name and kind, and the edge from
    ``order`` to ``group``.
    """
    root = make_project("C14", tmp_path / "c14")
    drop_nodes(root, C14_BAD)
    svg = tmp_path / "dag.svg"

    done = seeknal_cli("dag", "--project", str(root), "--output", str(svg))

    assert done.returncode == 0, done.stderr
    assert done.stdout == f"Wrote {svg} (3 nodes)\n"
    space = {"svg": "http://www.w3.org/2000/svg"}
    drawing = ElementTree.parse(svg).getroot()
    nodes = {
        str(g.findtext("svg:title", namespaces=space)): [
            t.text for t in g.findall("svg:text", space)
        ]
        for g in drawing.iter("{http://www.w3.org/2000/svg}g")
        if g.get("class") == "node"
    }
    assert {n: t for n, t in nodes.items() if not n.startswith("__legend__")} == {
        "source.order": ["order", "source"],
        "transform.group": ["group", "transform"],
        "transform.sentinel": ["sentinel", "transform"],
    }
    edges = [
        g.findtext("svg:title", namespaces=space)
        for g in drawing.iter("{http://www.w3.org/2000/svg}g")
        if g.get("class") == "edge"
    ]
    assert edges == ["source.order->transform.group"]


# C15: CSV edge cases: BOM, quoted newlines, header only, 0 bytes, CRLF

C15_CUSTOMERS = [(1, 10.5), (2, 20.0)]


def test_c15_csv_edge_cases(tmp_path: Path) -> None:
    """C15, "Correct result", every bullet on the sources: values and declared types
    of ``bom_customers``, ``tickets``, ``new_customers``, ``all_customers`` and
    ``crlf_customers``; the clear error for ``missing_customers``, failing only it;
    step 3 classifies every node as unchanged.
    """
    root = make_project("C15", tmp_path)
    project = Project(root)
    first_plan = project.plan().fingerprints

    result = run_failed(project)

    assert result.statuses() == {
        "source.bom_customers": "success",
        "source.tickets": "success",
        "source.new_customers": "success",
        "source.missing_customers": "failed",
        "source.crlf_customers": "success",
        "transform.all_customers": "success",
    }
    error = str(result.nodes["source.missing_customers"].error)
    assert "source.missing_customers" in error
    assert "data/empty.csv is empty" in error
    assert "sniff" not in error and "dialect" not in error

    customers_types = [("customer_id", "INTEGER"), ("amount", "DOUBLE")]
    for node in ("bom_customers", "crlf_customers"):
        assert rows(project, node) == C15_CUSTOMERS
        assert parquet_types(project.output_path(node)) == customers_types
    state = project.store.load_state("prod")
    assert state.entries["source.bom_customers"].columns[0] == [
        "customer_id",
        "INTEGER",
    ]
    assert rows(project, "tickets", "ticket_id") == [
        (1, "first line\nsecond line", 5),
        (2, 'has "quotes", and a comma', 7),
        (3, "plain", 9),
    ]
    assert rows(project, "new_customers") == []
    assert parquet_types(project.output_path("new_customers")) == customers_types
    assert rows(project, "all_customers") == sorted(C15_CUSTOMERS * 2)
    assert parquet_types(project.output_path("all_customers")) == customers_types

    rerun = run_failed(project)
    assert project.plan().fingerprints == first_plan
    assert {n: s for n, s in rerun.statuses().items() if s != "cached"} == {
        "source.missing_customers": "failed"
    }
    plan = environments.plan(project, "check")
    assert set(plan.classes().values()) == {"UNCHANGED"}
    assert plan.to_execute == ["source.missing_customers"]  # no production output


def test_c15_step1_schemas_and_previews_before_any_run(tmp_path: Path) -> None:
    """C15, "What to run" 1: each readable source's schema and preview, before any
    run, give the column names exactly as stored (no U+FEFF, no carriage return),
    the declared types and the file's values; the 0-byte file is named as empty.
    """
    root = make_project("C15", tmp_path)
    project = Project(root)
    customers_types = [("customer_id", "INTEGER"), ("amount", "DOUBLE")]

    for node in ("bom_customers", "crlf_customers", "new_customers"):
        assert project.schema(node).columns == customers_types
    for node in ("bom_customers", "crlf_customers"):
        frame = project.show(node)
        assert list(frame.columns) == ["customer_id", "amount"]
        assert list(frame.itertuples(index=False, name=None)) == C15_CUSTOMERS
    assert len(project.show("new_customers")) == 0
    assert project.show("tickets")["note"].tolist()[0] == "first line\nsecond line"
    with pytest.raises(UsageError, match="data/empty.csv is empty"):
        project.show("missing_customers")
    assert not (root / "target" / "cache").exists()


@pytest.mark.parametrize("content", [b"\n", codecs.BOM_UTF8, codecs.BOM_UTF8 + b"\r\n"])
def test_c15_a_blank_file_fails_only_its_source(tmp_path: Path, content: bytes) -> None:
    """C15, ``missing_customers`` with a file of a lone newline or a bare byte-order
    mark instead of 0 bytes: still the run's error of that source alone, named as
    empty; the plan does not take DuckDB's made-up ``column0`` for its header."""
    root = make_project("C15", tmp_path)
    (root / "data" / "empty.csv").write_bytes(content)

    result = run_failed(Project(root), parallel=True)

    failed = {n for n, s in result.statuses().items() if s != "success"}
    assert failed == {"source.missing_customers"}
    error = str(result.nodes["source.missing_customers"].error)
    assert error == (
        "source.missing_customers (seeknal/nodes.yml:27) failed: data file "
        "data/empty.csv is empty (only blank lines or a byte-order mark, no header "
        "row)"
    )


C15_DOWNSTREAM = """
---
kind: transform
name: missing_count
inputs:
  - ref: source.missing_customers
transform: SELECT count(*) AS customers FROM source.missing_customers
"""


def test_c15_a_source_that_failed_in_production_runs_in_an_environment(
    tmp_path: Path,
) -> None:
    """A C15 variant: production's run failed ``missing_customers`` (and skipped
    its reader), so an environment's plan runs both, giving the reason, instead of
    reading outputs production does not have; with the file fixed, the
    environment builds them."""
    root = make_project("C15", tmp_path)
    nodes = root / "seeknal" / "nodes.yml"
    nodes.write_text(nodes.read_text() + C15_DOWNSTREAM)
    run_failed(Project(root))
    unbuilt = ["source.missing_customers", "transform.missing_count"]

    plan = environments.plan(Project(root), "dev")

    assert set(plan.classes().values()) == {"UNCHANGED"}
    assert plan.to_execute == unbuilt
    assert plan.stale == dict.fromkeys(
        unbuilt,
        "no output in production: it failed, was skipped or was never run there",
    )
    assert plan.summary().startswith("2 nodes to execute, 5 read from production")
    shutil.copy(root / "data" / "header_only.csv", root / "data" / "empty.csv")
    assert environments.plan(Project(root), "dev").to_execute == unbuilt
    applied = environments.apply(Project(root), "dev")
    assert {n for n, s in applied.statuses().items() if s == "success"} == set(unbuilt)
    assert Project(root).show("missing_count", env="dev")["customers"].tolist() == [0]


C15_FEATURE_GROUP = """
---
kind: feature_group
name: customer_amounts
inputs:
  - ref: source.bom_customers
entity:
  name: customer
  join_keys: [customer_id]
features:
  amount: {dtype: double}
transform: |
  SELECT customer_id, amount FROM source.bom_customers
"""
BOM = "\ufeff"


def test_c15_feature_group_keyed_on_the_bom_column(tmp_path: Path) -> None:
    """C15, "Correct result", ``bom_customers``: "the first column is exactly
    ``customer_id`` (no U+FEFF) everywhere: ... the cached Parquet schema,
    feature-list validation, plan diffs": a feature group with join key
    ``customer_id`` on the BOM source validates and runs to (1, 10.5), (2, 20.0);
    no U+FEFF in any file under target/ (state, manifest, schemas, plans, Parquet
    bytes and schemas); step 3, ``seeknal plan dev`` on the command line and in
    Python, reports no changes.
    """
    root = make_project("C15", tmp_path)
    assert (root / "data" / "bom.csv").read_bytes().startswith(BOM.encode())
    with open(root / "seeknal" / "nodes.yml", "a") as nodes:
        nodes.write(C15_FEATURE_GROUP)
    project = Project(root)

    manifest = project.plan()
    result = run_failed(project)

    assert "feature_group.customer_amounts" in manifest.fingerprints
    assert project.dag().nodes["feature_group.customer_amounts"].join_keys == (
        "customer_id",
    )
    assert result.nodes["feature_group.customer_amounts"].status == "success"
    assert rows(project, "customer_amounts") == C15_CUSTOMERS
    assert parquet_types(project.output_path("customer_amounts")) == [
        ("customer_id", "INTEGER"),
        ("amount", "DOUBLE"),
    ]
    planned = seeknal_cli("plan", "dev", "--project", str(root))
    assert planned.returncode == 0, planned.stderr
    assert "\nNo changes against production.\n" in planned.stdout
    # missing_customers failed in production, so it is the one node to execute
    assert "Summary: 1 node to execute, 6 read from production" in planned.stdout
    plan = environments.plan(project, "dev")
    assert "\nNo changes against production.\n" in str(plan)
    assert set(plan.classes().values()) == {"UNCHANGED"}
    files = [p for p in (root / "target").rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {
        "state.json",
        "manifest.json",
        "schemas.json",
        "plan.json",
    }
    for path in files:
        body = path.read_bytes()
        assert BOM.encode() not in body, path
        assert b"\\ufeff" not in body.lower(), path
    with duckdb.connect() as conn:
        for path in files:
            if path.suffix == ".parquet":
                names = conn.execute(
                    f"SELECT name FROM parquet_schema('{path}')"
                ).fetchall()
                assert not [n for (n,) in names if BOM in n], path


# C17: a failure in the middle of a layer skips only its descendants

C17_FIRST = {
    "source.payments": "success",
    "transform.ok_a": "success",
    "transform.bad_b": "failed",
    "transform.c": "skipped",
    "transform.d": "success",
    "transform.e": "skipped",
}


def c17_first_run(root: Path, workers: int) -> tuple[RunResult, str]:
    out = io.StringIO()
    with pytest.raises(RunFailed) as failure:
        Project(root).run(
            max_workers=workers, full=True, reporter=TextReporter(out, verbose=False)
        )
    return failure.value.result, out.getvalue()


def c17_expected_first() -> dict[str, tuple[str, str | None]]:
    """Status and skip reason of each node's first run, from expected_status.csv."""
    expected = {}
    with open(CASES / "C17" / "expected_status.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            node_id = f"{'source' if row['node'] == 'payments' else 'transform'}."
            node_id += row["node"]
            status, _, why = row["status_first_run"].partition(" (")
            reason = re.sub(r"upstream (\w+)", r"upstream transform.\1", why[:-1])
            expected[node_id] = (status.lower(), reason or None)
    return expected


@pytest.mark.parametrize(
    ("workers", "attempt"),
    [
        (w, attempt)
        for w, repeats in ((1, 3), (2, 3), (4, 5))
        for attempt in range(repeats)
    ],
)
def test_c17_failure_skips_only_descendants(
    tmp_path: Path, workers: int, attempt: int
) -> None:
    """C17, "Correct result": the run 1 statuses, with the failed node's error and
    the skip reasons; "The statuses are the same with 1 worker and with 4 workers"
    (and 2), over several repeats; "The overall result is a failure ... after
    printing the full summary"; "The cached outputs of payments, ok_a and d are kept
    and valid. Nothing is written for bad_b, c or e".
    """
    root = make_project("C17", tmp_path)

    result, printed = c17_first_run(root, workers)

    assert result.statuses() == C17_FIRST
    assert {
        n: (r.status, r.reason) for n, r in result.nodes.items()
    } == c17_expected_first()
    error = str(result.nodes["transform.bad_b"].error)
    assert "transform.bad_b" in error and "Conversion Error" in error
    assert result.nodes["transform.c"].reason == "upstream transform.bad_b failed"
    assert result.nodes["transform.e"].reason == "upstream transform.c skipped"
    assert (result.count("success"), result.count("failed")) == (3, 1)
    assert (result.count("skipped"), len(result.nodes)) == (2, 6)
    assert "nodes: 6" in printed and "succeeded: 3" in printed
    assert "failed: 1" in printed and "skipped: 2" in printed
    assert printed.rstrip().endswith(result.headline())
    assert "Run FAILED" in printed and "Run succeeded" not in printed
    project = Project(root)
    assert rows(project, "payments", "payment_id") == [
        (1, "acc1", 100),
        (2, "acc2", 250),
        (3, "acc1", 50),
    ]
    assert rows(project, "ok_a") == [("acc1", 150), ("acc2", 250)]
    assert rows(project, "d") == [(400,)]
    state = project.store.load_state("prod")
    for name in ("bad_b", "c", "e"):
        assert f"transform.{name}" not in state.entries
        snapshots = root / "target" / "snapshots" / "transform" / name
        assert not [p for p in snapshots.rglob("*") if p.is_file()]
        assert not (
            root / "target" / "cache" / "transform" / f"{name}.parquet"
        ).exists()


def test_c17_command_line_fails_after_the_full_summary(tmp_path: Path) -> None:
    """C17, "Correct result": "The overall result is a failure: the run ... returns
    a failed status *after* printing the full summary. It never reports 'completed
    successfully'": ``seeknal run --max-workers 4`` exits 1; the summary lists all six
    nodes with their statuses and the totals, and only then comes the failed
    verdict; nothing after the summary says "succeeded".
    """
    root = make_project("C17", tmp_path)

    done = seeknal_cli(
        "run", "--max-workers", "4", "--project", str(root), merge_stderr=True
    )

    assert done.returncode == 1
    lines = done.stdout.splitlines()
    table = next(i for i, line in enumerate(lines) if line.startswith("node  "))
    summary = [line.split() for line in lines[table + 1 : table + 7]]
    expected = {n: s.upper() for n, (s, _) in c17_expected_first().items()}
    assert {words[0]: words[2] for words in summary} == expected
    totals = next(i for i, line in enumerate(lines) if line.startswith("nodes: 6,"))
    assert totals > table + 6
    assert "succeeded: 3" in lines[totals] and "failed: 1, skipped: 2" in lines[totals]
    after = lines[totals + 1 :]
    verdict = "Run FAILED: 4 executed (1 failed), 0 cached, 2 skipped of 6 nodes in "
    assert [line for line in after if line.startswith("Run ")] == [after[-1]]
    assert after[-1].startswith(verdict)
    assert not [line for line in after if "succeeded" in line]
    assert "completed successfully" not in done.stdout.lower()
    assert "Run succeeded" not in done.stdout


def widget_tree(state: dict[str, Any], model_id: str) -> list[dict[str, Any]]:
    """The states of a widget and all its descendants, from ipywidgets' state."""
    found = [state[model_id]["state"]]
    for child in state[model_id]["state"].get("children", []):
        found += widget_tree(state, child.removeprefix("IPY_MODEL_"))
    return found


def test_c17_widget_progress_shows_3_of_6_with_failed_and_skipped(
    shell: Any, tmp_path: Path
) -> None:
    """C17, "Correct result": "Progress shows 3 succeeded, 1 failed, 2 skipped out
    of 6, not 6/6": ``%seeknal run --max-workers 4`` in a real IPython shell with the
    widget panel (``%config SeeknalMagics.progress = 'widget'``); the ipywidgets
    state of the displayed panel has the overall bar at 3 of 6, styled as failed,
    its count saying "3 / 6 (1 failed, 2 skipped)", and the run ends in a
    RunFailed with the failed verdict.
    """
    root = make_project("C17", tmp_path / "c17")
    shell.run_line_magic("config", "SeeknalMagics.progress = 'widget'")

    result, shown = shell_cell(shell, f"%seeknal run --max-workers 4 --project {root}")

    assert isinstance(result.error_in_exec, RunFailed)
    assert str(result.error_in_exec).startswith(
        "Run FAILED: 4 executed (1 failed), 0 cached, 2 skipped of 6 nodes"
    )
    view = "application/vnd.jupyter.widget-view+json"
    panels = [o for o in shown.outputs if view in o.data]
    assert len({o.data[view]["model_id"] for o in panels}) == 1
    state = ipywidgets.Widget.get_manager_state(drop_defaults=False)["state"]
    rows_of_bars = [
        [state[c.removeprefix("IPY_MODEL_")]["state"] for c in w["children"]]
        for w in widget_tree(state, panels[0].data[view]["model_id"])
        if w["_model_name"] == "HBoxModel"
    ]
    (overall, count), *_ = rows_of_bars
    assert overall["description"] == "all nodes"
    assert (overall["value"], overall["max"]) == (3, 6)
    assert overall["bar_style"] == "danger"
    assert count["value"] == "3 / 6 (1 failed, 2 skipped)"
    summary = shown.outputs[-1]
    assert summary.update and view not in summary.data
    assert (
        summary.data["text/plain"]
        .splitlines()[-1]
        .startswith("Run FAILED: 4 executed (1 failed), 0 cached, 2 skipped of 6 nodes")
    )


def test_c17_fixed_node_reruns_exactly_its_branch(tmp_path: Path) -> None:
    """C17, "Correct result" ("Run 2 executes only bad_b, c and e"): with
    bad_b_fixed.sql, the rest comes from the cache and ``e`` returns (3, 400).
    """
    root = make_project("C17", tmp_path)
    c17_first_run(root, 4)
    replace_sql(root, "bad_b", (CASES / "C17" / "bad_b_fixed.sql").read_text())
    project = Project(root)

    result = project.run(max_workers=4)

    assert result.statuses() == {
        "source.payments": "cached",
        "transform.ok_a": "cached",
        "transform.bad_b": "success",
        "transform.c": "success",
        "transform.d": "cached",
        "transform.e": "success",
    }
    assert rows(project, "e") == [(3, 400)]


def test_c17_fail_fast_starts_nothing_after_the_failure(tmp_path: Path) -> None:
    """C17, "Correct result" ("Optional fail_fast mode"): with 1 worker no node
    starts after bad_b fails, and nothing is written for the nodes not started.
    """
    root = make_project("C17", tmp_path)

    result = run_failed(Project(root), max_workers=1, fail_fast=True)

    assert result.statuses() == {
        "source.payments": "success",
        "transform.ok_a": "success",
        "transform.bad_b": "failed",
        "transform.c": "skipped",
        "transform.d": "skipped",
        "transform.e": "skipped",
    }
    assert "fail-fast" in str(result.nodes["transform.d"].reason)
    snapshots = root / "target" / "snapshots" / "transform" / "d"
    assert not [p for p in snapshots.rglob("*") if p.is_file()]


def test_c17_fail_fast_with_workers_keeps_finished_nodes(tmp_path: Path) -> None:
    """C17, "Correct result" ("Optional fail_fast mode: ... nodes that are already
    running finish, with their status recorded"), with 4 workers.
    """
    root = make_project("C17", tmp_path)

    result = run_failed(Project(root), max_workers=4, fail_fast=True)

    statuses = result.statuses()
    assert statuses["transform.bad_b"] == "failed"
    assert statuses["transform.ok_a"] == "success"
    assert statuses["transform.c"] == statuses["transform.e"] == "skipped"
    assert statuses["transform.d"] in ("success", "skipped")
    assert "cancelled" not in statuses.values()
    assert rows(Project(root), "ok_a") == [("acc1", 150), ("acc2", 250)]


CASE_NAMES = ["C01", "C04", "C13", "C14", "C15", "C17"]


def case_files(folder: Path) -> dict[str, bytes]:
    """Every file of a cases folder by its path inside it, with its bytes."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def readme_inputs(readme: Path) -> list[str]:
    """The files that a case README's "## Input" section lists."""
    section = readme.read_text().split("## Input", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^- `([^`]+)`", section, re.MULTILINE)


def test_cases_folder_holds_every_case_with_its_readme_and_inputs() -> None:
    """Every handed case is in tests/cases with its README.md, and every input file
    that the README lists is there too, so the tests need nothing beside the repo."""
    assert sorted(p.name for p in CASES.iterdir() if p.is_dir()) == CASE_NAMES
    for case in CASE_NAMES:
        readme = CASES / case / "README.md"
        assert readme.read_text().startswith(f"# {case}: ")
        inputs = readme_inputs(readme)
        assert inputs, case
        for name in inputs:
            assert (CASES / case / name).is_file(), f"{case}/{name}"
    assert os.path.getsize(CASES / "C15" / "data" / "empty.csv") == 0


def test_cases_folder_is_a_copy_of_the_handed_cases() -> None:
    """tests/cases is file for file, byte for byte, the handed shared/cases (where
    that folder is beside the checkout, as in the project's workspace)."""
    handed = REPO.parent / "shared" / "cases"
    if not handed.is_dir():
        pytest.skip(f"{handed} is not beside this checkout")
    assert case_files(CASES) == case_files(handed)


def test_c17_earlier_outputs_of_failed_and_skipped_nodes_stay_and_are_stale(
    tmp_path: Path,
) -> None:
    """C17, "Correct result" ("Any earlier cache of theirs stays untouched (see
    C04) and is marked stale"): earlier outputs of bad_b, c and e keep their bytes,
    and the next run plans exactly those three again.
    """
    root = make_project("C17", tmp_path)
    failing = (root / "seeknal" / "nodes.yml").read_text()
    replace_sql(root, "bad_b", (CASES / "C17" / "bad_b_fixed.sql").read_text())
    Project(root).run(max_workers=4)
    cache = root / "target" / "cache" / "transform"
    before = {n: sha256(cache / f"{n}.parquet") for n in ("bad_b", "c", "e")}
    (root / "seeknal" / "nodes.yml").write_text(failing)

    result = run_failed(Project(root), max_workers=4)

    assert result.statuses() == C17_FIRST | {
        "source.payments": "cached",
        "transform.ok_a": "cached",
        "transform.d": "cached",
    }
    assert {n: sha256(cache / f"{n}.parquet") for n in before} == before
    assert result.stale == ["transform.bad_b", "transform.c", "transform.e"]
    assert [n for n in result.notes() if "stale" in n] == [
        f"transform.{n}: keeps its older output, which is stale (made from an "
        "earlier definition or data)"
        for n in ("bad_b", "c", "e")
    ]
    assert Project(root).execution_plan().to_run == [
        "transform.bad_b",
        "transform.c",
        "transform.e",
    ]

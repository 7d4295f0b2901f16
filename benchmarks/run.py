"""Benchmarks of seeknal_jupyter, run by hand; they write report.md and report.json.

Usage::

    .venv/bin/python benchmarks/run.py            # the full run (about half an hour)
    .venv/bin/python benchmarks/run.py --quick    # tiny sizes, to check the script

The full run writes benchmarks/results/; ``--quick`` writes
benchmarks/results/quick/ (git-ignored), so it never replaces the committed report.

Every measurement runs in a fresh Python process, so its peak memory (the
``ru_maxrss`` of that child, read with ``os.wait4``) is its own and no cache of an
earlier measurement helps it. Timings are medians of repeats; comparisons
(sequential against parallel) alternate their order and use the median of paired
ratios, because a small shared machine drifts from minute to minute.

Measures:

1. the fraud example at 1x, 10x and 100x: sequential against parallel wall time,
   speed-up, and peak memory;
2. a generated wide DAG (200 nodes): parallel wall time against its lower bound
   max(critical path, total work / min(workers, cores)), both from the node
   seconds of a sequential run (uncontended: one node at a time), paired with it;
3. per-node overhead on 1,000 trivial nodes, against the same DuckDB statements
   in a plain loop;
4. parse and plan of 5,000 nodes, and loading alone;
5. a no-op incremental run as a whole ``python -m seeknal_jupyter run`` process,
   beside the cost of starting Python and importing the package;
6. promoting an environment in which one node changed (``benchmarks/promote.py``):
   the fraud example at 1x and 50x and a 2,000-node project, lock to commit and the
   whole call, against copying the same outputs.

The child side of each measurement is this same file run with ``--child NAME``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PYTHON = sys.executable
sys.path.insert(0, str(REPO))  # measure the checkout this file sits in


@dataclass(frozen=True)
class Sizes:
    """How big and how often; ``--quick`` shrinks everything."""

    fraud_scales: tuple[int, ...] = (1, 10, 100)
    fraud_repeats: dict[int, int] = field(default_factory=lambda: {1: 7, 10: 5, 100: 3})
    dag_nodes: int = 200
    dag_rows: int = 1_000_000
    dag_repeats: int = 5
    trivial_nodes: int = 1000
    trivial_repeats: int = 3
    plan_nodes: int = 5000
    plan_repeats: int = 3
    noop_repeats: int = 9
    promote_cases: tuple[tuple[str, int], ...] = (
        ("fraud", 1),
        ("fraud", 50),
        ("wide", 2000),
    )
    promote_rounds: int = 3


QUICK = Sizes(
    fraud_scales=(1,),
    fraud_repeats={1: 1},
    dag_nodes=20,
    dag_rows=2_000,
    dag_repeats=1,
    trivial_nodes=30,
    trivial_repeats=1,
    plan_nodes=100,
    plan_repeats=1,
    noop_repeats=2,
    promote_cases=(("fraud", 1), ("wide", 50)),
    promote_rounds=1,
)

TARGETS = {
    "fraud_speedup": 1.0,
    "dag_bound_ratio": 1.10,
    "trivial_overhead_ms": 2.0,
    "plan_seconds": 2.0,
    "noop_seconds": 0.3,
    "peak_rss_mb_100x": 1024.0,
}


# --------------------------------------------------------------------------------
# Child processes: each measurement is one fresh process.
# --------------------------------------------------------------------------------


@dataclass
class ChildRun:
    """What one child process reported, with its wall time and peak memory."""

    result: dict[str, Any]
    process_seconds: float
    peak_rss_mb: float


def spawn(name: str, **params: Any) -> ChildRun:
    """Run ``--child name`` in a fresh interpreter; fail loudly if it fails."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        log = Path(tmp) / "log.txt"
        command = [
            PYTHON,
            str(Path(__file__).resolve()),
            "--child",
            name,
            "--params",
            json.dumps(params),
            "--result",
            str(out),
        ]
        with open(log, "wb") as stream:
            started = time.perf_counter()
            process = subprocess.Popen(command, stdout=stream, stderr=stream, cwd=REPO)
            _, status, usage = os.wait4(process.pid, 0)
            seconds = time.perf_counter() - started
            process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise RuntimeError(
                f"benchmark child {name} {params} failed "
                f"(exit {process.returncode}):\n{log.read_text()[-4000:]}"
            )
        return ChildRun(json.loads(out.read_text()), seconds, usage.ru_maxrss / 1024)


def timed_command(command: list[str]) -> tuple[float, str]:
    """Wall time of a whole process started in the checkout, and its output."""
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{command} failed: {done.stderr[-2000:]}")
    return seconds, done.stdout


def child_run(params: dict[str, Any]) -> dict[str, Any]:
    """One full run of a project, with where its wall time went."""
    from seeknal_jupyter import Project, project

    phases = {"check_schemas": 0.0, "executor": 0.0}
    _time_calls(project, "check_schemas", phases)
    _time_calls(project.Executor, "run", phases, key="executor")
    started = time.perf_counter()
    result = Project(params["project"]).run(
        full=True,
        parallel=params["parallel"],
        max_workers=params.get("max_workers"),
    )
    wall = time.perf_counter() - started
    seconds = {n: r.seconds for n, r in result.nodes.items()}
    dag = Project(params["project"]).dag()
    path, critical = dag.critical_path(seconds)
    return {
        "wall": wall,
        "prepare": wall - result.wall_seconds,
        "engine_wall": result.wall_seconds,
        "workers": result.workers,
        "statuses": sorted(set(result.statuses().values())),
        "node_seconds": seconds,
        "work": sum(seconds.values()),
        "critical_path": path,
        "critical_seconds": critical,
        **phases,
    }


def _time_calls(
    owner: Any, name: str, totals: dict[str, float], key: str | None = None
) -> None:
    original = getattr(owner, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            totals[key or name] += time.perf_counter() - started

    setattr(owner, name, timed)


def child_raw_loop(params: dict[str, Any]) -> dict[str, Any]:
    """The trivial nodes' statements on one DuckDB connection in a plain loop."""
    import duckdb

    from seeknal_jupyter.execute import Settings

    folder = Path(params["folder"])
    folder.mkdir(parents=True, exist_ok=True)
    conn = duckdb.connect(
        ":memory:", config={"threads": Settings.for_machine().threads}
    )
    conn.execute("CREATE SCHEMA transform")
    root = folder / "root.parquet"
    conn.execute(f"COPY (SELECT 1 AS x) TO '{root}' (FORMAT parquet)")
    started = time.perf_counter()
    for i in range(1, params["nodes"]):
        conn.execute(
            f"CREATE OR REPLACE VIEW transform.t0000 AS "
            f"SELECT * FROM read_parquet('{root}')"
        )
        conn.execute(
            f"COPY (SELECT x + {i} AS x FROM transform.t0000) "
            f"TO '{folder / f't{i:05d}.parquet'}' (FORMAT parquet)"
        )
        conn.execute("DROP VIEW transform.t0000")
    loop = time.perf_counter() - started
    conn.close()
    return {"loop": loop}


def child_plan(params: dict[str, Any]) -> dict[str, Any]:
    """Cold ``Project.plan()`` (imports done first and timed apart)."""
    started = time.perf_counter()
    from seeknal_jupyter import Project

    imported = time.perf_counter()
    manifest = Project(params["project"]).plan()
    return {
        "import": imported - started,
        "plan": time.perf_counter() - imported,
        "nodes": len(manifest.dag.nodes),
        "edges": manifest.edge_count,
    }


def child_plan_parts(params: dict[str, Any]) -> dict[str, Any]:
    """Cold loading, DAG building and fingerprinting, each timed."""
    from seeknal_jupyter import Project
    from seeknal_jupyter.dag import build_dag
    from seeknal_jupyter.fingerprint import fingerprints

    project = Project(params["project"])
    started = time.perf_counter()
    loaded = project.load()
    loaded_at = time.perf_counter()
    dag = build_dag(loaded.nodes)
    built_at = time.perf_counter()
    fingerprints(dag, project.root)
    done = time.perf_counter()
    return {
        "load": loaded_at - started,
        "dag": built_at - loaded_at,
        "fingerprints": done - built_at,
    }


def child_profile(params: dict[str, Any]) -> dict[str, Any]:
    """Where the time of one workload goes: the top functions by own time.

    Worker threads are profiled too (each node's build separately, then merged);
    the calling thread's waits for them are left out, as they are not work.
    """
    from seeknal_jupyter import Project, execute

    workers: list[cProfile.Profile] = []
    build = execute.Executor._work

    def profiled(self: Any, task: Any) -> Any:
        profile = cProfile.Profile()
        workers.append(profile)
        profile.enable()
        try:
            return build(self, task)
        finally:
            profile.disable()

    execute.Executor._work = profiled  # type: ignore[method-assign]
    project = Project(params["project"])
    action: Callable[[], Any] = {
        "plan": project.plan,
        "noop": lambda: project.run(),
        "run": lambda: project.run(full=True, parallel=params.get("parallel", False)),
    }[params["action"]]
    profile = cProfile.Profile()
    profile.enable()
    action()
    profile.disable()
    return {"top": top_functions([profile, *workers], params.get("limit", 12))}


WAITS = ("acquire' of '_thread.lock", "threading.py")


def top_functions(profiles: list[cProfile.Profile], limit: int) -> list[dict[str, Any]]:
    """Functions with the most own time (waits left out), and the total."""
    stats = pstats.Stats(profiles[0], stream=io.StringIO())
    for extra in profiles[1:]:
        stats.add(extra)
    rows = []
    for (file, line, function), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        if any(w in f"{file}:{function}" for w in WAITS):
            continue
        rows.append(
            {
                "function": f"{_short(file)}:{line}({function})",
                "calls": calls,
                "own": own,
                "cumulative": cumulative,
            }
        )
    rows.sort(key=lambda r: r["own"], reverse=True)
    total = sum(r["own"] for r in rows)
    return [{"total": total}, *rows[:limit]]


def _short(file: str) -> str:
    for marker in ("site-packages/", "seeknal_jupyter/", "lib/python"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def child_promote(params: dict[str, Any]) -> dict[str, Any]:
    """One case of ``benchmarks/promote.py``."""
    from promote import run_case

    return run_case(
        params["kind"], params["size"], Path(params["folder"]), params["rounds"]
    )


CHILDREN: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "run": child_run,
    "raw_loop": child_raw_loop,
    "plan": child_plan,
    "plan_parts": child_plan_parts,
    "profile": child_profile,
    "promote": child_promote,
}


def child_main(name: str, params: str, result: str) -> None:
    report = CHILDREN[name](json.loads(params))
    report["self_peak_rss_mb"] = (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    Path(result).write_text(json.dumps(report))


# --------------------------------------------------------------------------------
# Generated projects.
# --------------------------------------------------------------------------------


def write_nodes(project: Path, documents: dict[str, str]) -> None:
    """Write ``{relative file: YAML text}`` under ``project/seeknal``."""
    for relative, text in documents.items():
        path = project / "seeknal" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def transform_yaml(name: str, inputs: list[str], sql: str, extra: str = "") -> str:
    refs = "".join(f"  - ref: {i}\n" for i in inputs)
    body = "".join(f"  {line}\n" for line in sql.strip().splitlines())
    return (
        f"kind: transform\nname: {name}\n{extra}"
        + (f"inputs:\n{refs}" if inputs else "")
        + f"transform: |\n{body}"
    )


def make_wide_dag(project: Path, nodes: int, rows: int) -> dict[str, int]:
    """``nodes`` nodes in five layers: sources, then 3, 3, 2 and 1 transforms each.

    Each of the ``nodes / 10`` sources is a Parquet file of ``rows`` generated
    payments; the transforms aggregate, join and window over them.
    """
    import duckdb

    width = max(1, nodes // 10)
    (project / "data").mkdir(parents=True, exist_ok=True)
    conn = duckdb.connect()
    documents = {}
    for i in range(width):
        conn.execute(
            f"""COPY (
              SELECT i AS id,
                     (hash(i * 31 + {i}) % 1000)::INTEGER AS k1,
                     (hash(i * 17 + {i}) % 50)::INTEGER AS k2,
                     (hash(i * 7 + {i}) % 100000) / 100.0 AS amount,
                     TIMESTAMP '2024-01-01' + to_seconds((hash(i + {i}) % 7776000)::BIGINT) AS ts,
                     ['card', 'web', 'app', 'pos'][(hash(i * 3 + {i}) % 4)::INTEGER + 1] AS cat
              FROM range({rows}) AS t(i)
            ) TO '{project / "data" / f"s{i:02d}.parquet"}' (FORMAT parquet)"""
        )
        documents[f"sources/s{i:02d}.yml"] = (
            f"kind: source\nname: s{i:02d}\nsource: parquet\n"
            f"table: data/s{i:02d}.parquet\n"
        )
    conn.close()

    def nxt(i: int, step: int) -> int:
        return (i + step) % width

    for i in range(width):
        s = f"source.s{i:02d}"
        a = [f"a{i:02d}_{j}" for j in range(3)]
        layer1 = {
            a[
                0
            ]: f"SELECT k1, count(*) AS n, sum(amount) AS total, avg(amount) AS mean,\n"
            f"       stddev_samp(amount) AS sd\nFROM {s}\nGROUP BY k1",
            a[
                1
            ]: f"SELECT k2, cat, max(amount) AS top, quantile_cont(amount, 0.9) AS p90,\n"
            f"       min(ts) AS first_ts\nFROM {s}\nWHERE amount > 5\nGROUP BY k2, cat",
            a[
                2
            ]: f"SELECT id, k1, k2, amount * 1.1 AS adj, date_trunc('day', ts) AS day,\n"
            f"       row_number() OVER (PARTITION BY k1 ORDER BY ts) AS seq\n"
            f"FROM {s}\nWHERE k2 < 25",
        }
        for name, sql in layer1.items():
            documents[f"layer1/{name}.yml"] = transform_yaml(name, [s], sql)
    for i in range(width):
        layer2 = {
            f"b{i:02d}_0": (
                f"SELECT r.k1, count(*) AS n, sum(r.adj) AS adj_total, any_value(s.mean) AS mean\n"
                f"FROM transform.a{i:02d}_2 AS r\n"
                f"JOIN transform.a{nxt(i, 1):02d}_0 AS s USING (k1)\nGROUP BY r.k1"
            ),
            f"b{i:02d}_1": (
                f"SELECT day, count(*) AS n, avg(adj) AS adj_mean\n"
                f"FROM transform.a{i:02d}_2\nGROUP BY day"
            ),
            f"b{i:02d}_2": (
                f"SELECT x.k2, x.cat, x.top - y.top AS diff, x.p90 / nullif(y.p90, 0) AS ratio\n"
                f"FROM transform.a{i:02d}_1 AS x\n"
                f"JOIN transform.a{nxt(i, 2):02d}_1 AS y USING (k2, cat)"
            ),
        }
        for name, sql in layer2.items():
            documents[f"layer2/{name}.yml"] = transform_yaml(name, [], sql)
    for i in range(width):
        layer3 = {
            f"c{i:02d}_0": (
                f"SELECT x.k1, x.n + y.n AS n, x.adj_total / nullif(y.adj_total, 0) AS rel\n"
                f"FROM transform.b{i:02d}_0 AS x\n"
                f"JOIN transform.b{nxt(i, 3):02d}_0 AS y USING (k1)"
            ),
            f"c{i:02d}_1": (
                f"SELECT r.id, r.k1, r.adj - b.adj_mean AS centred\n"
                f"FROM transform.a{i:02d}_2 AS r\n"
                f"JOIN transform.b{i:02d}_1 AS b USING (day)"
            ),
        }
        for name, sql in layer3.items():
            documents[f"layer3/{name}.yml"] = transform_yaml(name, [], sql)
    for i in range(width):
        name = f"d{i:02d}"
        sql = (
            f"SELECT c.k1, count(*) AS n, avg(c.centred) AS centred, any_value(k.rel) AS rel\n"
            f"FROM transform.c{i:02d}_1 AS c\n"
            f"LEFT JOIN transform.c{nxt(i, 1):02d}_0 AS k USING (k1)\nGROUP BY c.k1"
        )
        documents[f"layer4/{name}.yml"] = transform_yaml(name, [], sql)
    write_nodes(project, documents)
    return {"nodes": len(documents), "sources": width, "rows_per_source": rows}


def make_trivial(project: Path, nodes: int) -> None:
    """One ``SELECT 1 AS x`` node and ``nodes - 1`` trivial nodes reading it."""
    documents = {"t0000.yml": transform_yaml("t0000", [], "SELECT 1 AS x")}
    for i in range(1, nodes):
        documents[f"fan/t{i:05d}.yml"] = transform_yaml(
            f"t{i:05d}", [], f"SELECT x + {i} AS x FROM transform.t0000"
        )
    write_nodes(project, documents)


def make_large(project: Path, nodes: int) -> None:
    """``nodes`` nodes, one file each: 1% sources (CSV), the rest transforms and
    feature groups reading one to three earlier nodes, with realistic SQL."""
    rng = random.Random(20240601)
    sources = max(2, nodes // 100)
    (project / "data").mkdir(parents=True, exist_ok=True)
    documents = {}
    for i in range(sources):
        (project / "data" / f"s{i:03d}.csv").write_text(
            "k,v,ts\n"
            + "".join(f"{j},{j * 1.5},2024-01-0{1 + j % 9}\n" for j in range(20))
        )
        documents[f"sources/s{i:03d}.yml"] = (
            f"kind: source\nname: s{i:03d}\ndescription: raw table {i}\nowner: data\n"
            f"tags: [raw]\nsource: csv\ntable: data/s{i:03d}.csv\n"
            "schema:\n  - {name: k, data_type: integer}\n"
            "  - {name: v, data_type: double}\n  - {name: ts, data_type: date}\n"
        )
    made = [f"source.s{i:03d}" for i in range(sources)]
    for i in range(nodes - sources):
        name = f"t{i:05d}"
        picks = rng.sample(made[-400:], k=min(len(made[-400:]), rng.randint(1, 3)))
        first, rest = picks[0], picks[1:]
        joins = "".join(
            f"LEFT JOIN {p} AS j{n} ON j{n}.k = a.k\n" for n, p in enumerate(rest)
        )
        extra = " + ".join(f"coalesce(j{n}.v, 0)" for n in range(len(rest))) or "0"
        sql = (
            f"-- step {i}: combine {len(picks)} input(s)\n"
            f"SELECT a.k, a.v + {extra} AS v, a.ts,\n"
            f"       count(*) OVER (PARTITION BY a.k % {rng.randint(2, 9)}) AS n\n"
            f"FROM {first} AS a\n{joins}WHERE a.v >= {rng.randint(0, 5)}"
        )
        folder = f"group{i // 250:02d}"
        documents[f"{folder}/{name}.yml"] = transform_yaml(
            name,
            [],
            sql,
            extra=f"description: step {i}\nowner: team{i % 7}\ntags: [t{i % 11}]\n",
        )
        made.append(f"transform.{name}")
    write_nodes(project, documents)


def fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


# --------------------------------------------------------------------------------
# Measurements.
# --------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


RUN_MODES: dict[str, dict[str, Any]] = {
    "sequential": {"parallel": False},
    "parallel": {"parallel": True},
}


def measure_fraud(work: Path, sizes: Sizes) -> dict[str, Any]:
    """Sequential against parallel full runs of the fraud example per scale."""
    scales = {}
    for scale in sizes.fraud_scales:
        project = work / f"fraud-{scale}x"
        if project.exists():
            shutil.rmtree(project)
        generate, _ = timed_command(
            [
                PYTHON,
                "-m",
                "seeknal_jupyter",
                "init",
                "--example",
                "fraud-detection",
                str(project),
                "--scale",
                str(scale),
            ]
        )
        spawn("run", project=str(project), parallel=True)  # warm the page cache
        runs: dict[str, list[ChildRun]] = {mode: [] for mode in RUN_MODES}
        for repeat in range(sizes.fraud_repeats.get(scale, 3)):
            order = list(RUN_MODES)
            order = order[repeat % 2 :] + order[: repeat % 2]
            for mode in order:
                runs[mode].append(spawn("run", project=str(project), **RUN_MODES[mode]))
        ratios = [
            s.result["wall"] / p.result["wall"]
            for s, p in zip(runs["sequential"], runs["parallel"], strict=True)
        ]
        scales[str(scale)] = {
            "generate_seconds": generate,
            "workers": runs["parallel"][0].result["workers"],
            "speedup": median(ratios),
            "speedup_of_medians": median([r.result["wall"] for r in runs["sequential"]])
            / median([r.result["wall"] for r in runs["parallel"]]),
            "ratios": ratios,
            **{mode: summarise_runs(items) for mode, items in runs.items()},
        }
        print(
            f"fraud {scale}x: sequential {scales[str(scale)]['sequential']['wall']:.2f}s "
            f"parallel {scales[str(scale)]['parallel']['wall']:.2f}s "
            f"speed-up {scales[str(scale)]['speedup']:.2f}",
            flush=True,
        )
    return scales


def summarise_runs(runs: list[ChildRun]) -> dict[str, Any]:
    walls = [r.result["wall"] for r in runs]
    middle = sorted(runs, key=lambda r: r.result["wall"])[len(runs) // 2]
    return {
        "wall": median(walls),
        "walls": walls,
        "engine_wall": median([r.result["engine_wall"] for r in runs]),
        "work": median([r.result["work"] for r in runs]),
        "critical_seconds": median([r.result["critical_seconds"] for r in runs]),
        "check_schemas": median([r.result["check_schemas"] for r in runs]),
        "prepare": median([r.result["prepare"] for r in runs]),
        "executor": median([r.result["executor"] for r in runs]),
        "peak_rss_mb": max(r.peak_rss_mb for r in runs),
        "process_seconds": median([r.process_seconds for r in runs]),
        "median_run": {
            "critical_path": middle.result["critical_path"],
            "node_seconds": middle.result["node_seconds"],
        },
    }


def measure_wide_dag(work: Path, sizes: Sizes) -> dict[str, Any]:
    """Parallel wall time of a wide DAG against its lower bound.

    The bound of each parallel run comes from the sequential run of the same
    repeat: there each node had the machine to itself, so its seconds are the
    node's work, not inflated by sharing the cores with other nodes.
    """
    project = fresh(work / "wide-dag")
    shape = make_wide_dag(project, sizes.dag_nodes, sizes.dag_rows)
    spawn("run", project=str(project), parallel=True)  # warm-up
    cores = os.cpu_count() or 1
    runs: dict[str, list[ChildRun]] = {mode: [] for mode in RUN_MODES}
    for repeat in range(sizes.dag_repeats):
        order = list(RUN_MODES)
        order = order[repeat % 2 :] + order[: repeat % 2]
        for mode in order:
            runs[mode].append(spawn("run", project=str(project), **RUN_MODES[mode]))
    parallel, sequential = runs["parallel"], runs["sequential"]
    rows = [
        dag_bound_row(p.result, s.result, cores)
        for p, s in zip(parallel, sequential, strict=True)
    ]
    middle = sorted(rows, key=lambda x: x["ratio_engine"])[len(rows) // 2]
    result = {
        **shape,
        "workers": parallel[0].result["workers"],
        "cores": cores,
        "runs": rows,
        "median": middle,
        "ratio_engine": median([x["ratio_engine"] for x in rows]),
        "ratio_executor": median([x["ratio_executor"] for x in rows]),
        "ratio_run": median([x["ratio_run"] for x in rows]),
        **{mode: summarise_runs(items) for mode, items in runs.items()},
        "speedup": median(
            [
                s.result["wall"] / p.result["wall"]
                for s, p in zip(sequential, parallel, strict=True)
            ]
        ),
    }
    print(
        f"wide DAG {shape['nodes']} nodes: parallel {middle['engine_wall']:.2f}s, "
        f"bound {middle['bound']:.2f}s, ratio {result['ratio_engine']:.3f}",
        flush=True,
    )
    return result


def dag_bound_row(
    par: dict[str, Any], seq: dict[str, Any], cores: int
) -> dict[str, Any]:
    """One parallel run against its lower bound, max(critical path, work / lanes),
    both taken from the sequential run's node seconds."""
    lanes = min(par["workers"], cores)
    bound = max(seq["critical_seconds"], seq["work"] / lanes)
    return {
        "executor": par["executor"],
        "engine_wall": par["engine_wall"],
        "wall": par["wall"],
        "work": seq["work"],
        "critical_seconds": seq["critical_seconds"],
        "parallel_work": par["work"],
        "lanes": lanes,
        "bound": bound,
        "ratio_executor": par["executor"] / bound,
        "ratio_engine": par["engine_wall"] / bound,
        "ratio_run": par["wall"] / bound,
        "idle_worker_seconds": lanes * par["executor"] - par["work"],
        "outside_executor": par["wall"] - par["executor"],
        "check_schemas": par["check_schemas"],
    }


def measure_trivial(work: Path, sizes: Sizes) -> dict[str, Any]:
    """Engine wall per trivial node against the same statements in a plain loop."""
    project = fresh(work / "trivial")
    make_trivial(project, sizes.trivial_nodes)
    n = sizes.trivial_nodes
    spawn("run", project=str(project), parallel=False)  # warm-up
    sequential, parallel, raw = [], [], []
    for _ in range(sizes.trivial_repeats):
        sequential.append(spawn("run", project=str(project), parallel=False))
        parallel.append(spawn("run", project=str(project), parallel=True))
        raw.append(spawn("raw_loop", folder=str(fresh(work / "trivial-raw")), nodes=n))
    raw_loop = median([r.result["loop"] for r in raw])
    result: dict[str, Any] = {
        "nodes": n,
        "raw_loop": raw_loop,
        "raw_ms": 1000 * raw_loop / n,
    }
    for mode, runs in (("sequential", sequential), ("parallel", parallel)):
        summary = summarise_runs(runs)
        summary.pop("median_run")
        work_ms = 1000 * summary["work"] / n
        result[mode] = {
            **summary,
            "wall_ms": 1000 * summary["wall"] / n,
            "overhead_ms": 1000 * (summary["wall"] - raw_loop) / n,
            "executor_overhead_ms": 1000 * (summary["executor"] - raw_loop) / n,
            "node_ms": work_ms,
            "inside_node_overhead_ms": work_ms - result["raw_ms"],
        }
    profile = spawn("profile", project=str(project), action="run", parallel=False)
    result["profile"] = profile.result["top"]
    print(
        f"trivial {n} nodes: {result['sequential']['wall_ms']:.2f} ms/node, raw "
        f"{result['raw_ms']:.2f} ms, overhead {result['sequential']['overhead_ms']:.2f} ms",
        flush=True,
    )
    return result


def measure_plan(work: Path, sizes: Sizes) -> dict[str, Any]:
    """Cold and warm plans of a large project, and loading, DAG and fingerprints apart.

    A cold plan starts without ``target/`` and binds every node's SQL; a warm one
    re-plans an unchanged project, whose checked schemas are remembered.
    """
    project = fresh(work / "large")
    make_large(project, sizes.plan_nodes)
    plans = []
    for _ in range(sizes.plan_repeats):
        shutil.rmtree(project / "target", ignore_errors=True)
        plans.append(spawn("plan", project=str(project)))
    warm = [spawn("plan", project=str(project)) for _ in range(sizes.plan_repeats)]
    parts = [
        spawn("plan_parts", project=str(project)) for _ in range(sizes.plan_repeats)
    ]
    profile = spawn("profile", project=str(project), action="plan")
    result = {
        "nodes": plans[0].result["nodes"],
        "edges": plans[0].result["edges"],
        "plan": median([p.result["plan"] for p in plans]),
        "plans": [p.result["plan"] for p in plans],
        "plan_warm": median([p.result["plan"] for p in warm]),
        "import": median([p.result["import"] for p in plans]),
        "peak_rss_mb": max(p.peak_rss_mb for p in plans),
        **{
            key: median([p.result[key] for p in parts])
            for key in ("load", "dag", "fingerprints")
        },
        "profile": profile.result["top"],
    }
    result["load_and_dag"] = result["load"] + result["dag"]
    print(
        f"plan {result['nodes']} nodes: {result['plan']:.2f}s "
        f"(load {result['load']:.2f}s, dag {result['dag']:.3f}s, "
        f"fingerprints {result['fingerprints']:.2f}s)",
        flush=True,
    )
    return result


def measure_noop(work: Path, sizes: Sizes) -> dict[str, Any]:
    """A whole ``python -m seeknal_jupyter run`` process with everything cached."""
    project = work / "fraud-1x"
    if not (project / "target").exists():
        fresh(project)
        timed_command(
            [
                PYTHON,
                "-m",
                "seeknal_jupyter",
                "init",
                "--example",
                "fraud-detection",
                str(project),
            ]
        )
    command = [PYTHON, "-m", "seeknal_jupyter", "run", "--project", str(project)]
    timed_command(command)  # makes sure everything is built, and warms the caches
    walls, cached = [], []
    startups: dict[str, list[float]] = {"python": [], "import": [], "import_cli": []}
    probes = {
        "python": [PYTHON, "-c", "pass"],
        "import": [PYTHON, "-c", "import seeknal_jupyter"],
        "import_cli": [PYTHON, "-c", "import seeknal_jupyter.cli"],
    }
    for _ in range(sizes.noop_repeats):
        seconds, output = timed_command(command)
        walls.append(seconds)
        found = re.search(r"(\d+) cached of (\d+) nodes", output)
        cached.append(bool(found and found.group(1) == found.group(2)))
        for key, probe in probes.items():
            startups[key].append(timed_command(probe)[0])
    profile = spawn("profile", project=str(project), action="noop")
    result = {
        "wall": median(walls),
        "walls": walls,
        "all_cached": all(cached),
        **{key: median(values) for key, values in startups.items()},
        "profile": profile.result["top"],
        "import_modules": import_times(),
    }
    result["in_process"] = result["wall"] - result["import_cli"]
    print(
        f"no-op run: {result['wall']:.3f}s (python {result['python']:.3f}s, "
        f"import {result['import']:.3f}s, import cli {result['import_cli']:.3f}s)",
        flush=True,
    )
    return result


def measure_promote(work: Path, sizes: Sizes) -> list[dict[str, Any]]:
    """Promotes of an environment with one changed node, per case (fresh processes)."""
    cases = []
    for kind, size in sizes.promote_cases:
        folder = fresh(work / f"promote-{kind}-{size}")
        run = spawn(
            "promote",
            kind=kind,
            size=size,
            folder=str(folder),
            rounds=sizes.promote_rounds,
        )
        cases.append(run.result)
        print(
            f"promote, {run.result['case']}: lock to commit "
            f"{run.result['commit_ms']:.1f} ms, call {run.result['call_ms']:.1f} ms, "
            f"copying {run.result['copy_ms']:.1f} ms",
            flush=True,
        )
        shutil.rmtree(folder, ignore_errors=True)
    return cases


def import_times(limit: int = 8) -> list[dict[str, Any]]:
    """The slowest packages the command line imports (``-X importtime``)."""
    done = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", "import seeknal_jupyter.cli"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    rows: list[dict[str, Any]] = []
    for line in done.stderr.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].strip()
        if "." not in name and not name.startswith("_"):
            rows.append({"module": name, "cumulative_ms": int(parts[1]) / 1000})
    rows.sort(key=lambda r: r["cumulative_ms"], reverse=True)
    return rows[:limit]


# --------------------------------------------------------------------------------
# Report.
# --------------------------------------------------------------------------------


@dataclass
class Row:
    measure: str
    value: str
    target: str
    met: bool | None
    number: float
    reason: str = ""


def verdicts(results: dict[str, Any]) -> list[Row]:
    rows = []
    for scale, data in results["fraud"].items():
        seq, par = data["sequential"], data["parallel"]
        rows.append(
            Row(
                f"fraud {scale}x: parallel speed-up over sequential "
                f"({data['workers']} workers; median of paired ratios)",
                f"{data['speedup']:.2f}x (seq {seq['wall']:.2f}s, par {par['wall']:.2f}s)",
                "≥ 1.00x",
                data["speedup"] >= TARGETS["fraud_speedup"],
                data["speedup"],
                fraud_reason(scale, data),
            )
        )
    biggest = max(results["fraud"], key=int)
    peak = max(
        results["fraud"][biggest][m]["peak_rss_mb"] for m in ("sequential", "parallel")
    )
    rows.append(
        Row(
            f"fraud {biggest}x: peak memory (max RSS, either mode)",
            f"{peak:.0f} MB (seq {results['fraud'][biggest]['sequential']['peak_rss_mb']:.0f}, "
            f"par {results['fraud'][biggest]['parallel']['peak_rss_mb']:.0f})",
            "≤ 1024 MB at 100x",
            peak <= TARGETS["peak_rss_mb_100x"] if biggest == "100" else None,
            peak,
            ""
            if peak <= TARGETS["peak_rss_mb_100x"]
            else "DuckDB buffers the largest join (transactions with its lookups) in memory per connection",
        )
    )
    dag = results["wide_dag"]
    med = dag["median"]
    rows.append(
        Row(
            f"wide DAG ({dag['nodes']} nodes): parallel wall (RunResult.wall_seconds) "
            "/ lower bound",
            f"{dag['ratio_engine']:.3f} ({med['engine_wall']:.2f}s vs "
            f"max(cp {med['critical_seconds']:.2f}s, work {med['work']:.2f}s / {med['lanes']})"
            f" = {med['bound']:.2f}s, from the sequential run's node seconds)",
            "≤ 1.10",
            dag["ratio_engine"] <= TARGETS["dag_bound_ratio"],
            dag["ratio_engine"],
            dag_reason(dag),
        )
    )
    trivial = results["trivial"]
    for mode in ("sequential", "parallel"):
        t = trivial[mode]
        rows.append(
            Row(
                f"{trivial['nodes']} trivial nodes, {mode}: overhead per node "
                "(run wall − plain DuckDB loop) / nodes",
                f"{t['overhead_ms']:.2f} ms ({t['wall_ms']:.2f} ms/node vs "
                f"{trivial['raw_ms']:.2f} ms raw)",
                "≤ 2 ms",
                t["overhead_ms"] <= TARGETS["trivial_overhead_ms"],
                t["overhead_ms"],
                trivial_reason(trivial, mode),
            )
        )
        rows.append(
            Row(
                f"{trivial['nodes']} trivial nodes, {mode}: executor only "
                "(executor wall − plain DuckDB loop) / nodes",
                f"{t['executor_overhead_ms']:.2f} ms",
                "(context)",
                None,
                t["executor_overhead_ms"],
            )
        )
    plan = results["plan"]
    rows.append(
        Row(
            f"plan of {plan['nodes']} nodes (Project.plan(), cold process, imports apart)",
            f"{plan['plan']:.2f}s (load {plan['load']:.2f}s, DAG {plan['dag']:.3f}s, "
            f"fingerprints {plan['fingerprints']:.2f}s)",
            "≤ 2 s",
            plan["plan"] <= TARGETS["plan_seconds"],
            plan["plan"],
            f"loading and the DAG take {plan['load_and_dag']:.2f}s of it; the rest is "
            "binding every node's SQL in DuckDB before the manifest is written (the "
            "schema check: each node bound into an empty table of its columns, by "
            "CREATE TABLE AS ... LIMIT 0, the nodes of a layer at once); the "
            "checked columns are remembered by "
            "fingerprint, so a re-plan binds only what changed. "
            + profile_reason(plan["profile"], "plan"),
        )
    )
    rows.append(
        Row(
            f"re-plan of the same {plan['nodes']} nodes (schemas remembered)",
            f"{plan['plan_warm']:.2f}s",
            "≤ 2 s",
            plan["plan_warm"] <= TARGETS["plan_seconds"],
            plan["plan_warm"],
            "loading, fingerprints and the manifest; no node's SQL is bound again.",
        )
    )
    rows.append(
        Row(
            f"load + DAG of {plan['nodes']} nodes",
            f"{plan['load_and_dag']:.2f}s",
            "(context)",
            None,
            plan["load_and_dag"],
        )
    )
    noop = results["noop"]
    rows.append(
        Row(
            "no-op incremental run, whole `python -m seeknal_jupyter run` process (fraud 1x)",
            f"{noop['wall']:.3f}s{'' if noop['all_cached'] else ' (NOT all cached!)'}",
            "≤ 0.3 s",
            noop["wall"] <= TARGETS["noop_seconds"] and noop["all_cached"],
            noop["wall"],
            noop_reason(noop),
        )
    )
    rows.append(
        Row(
            "start-up alone: `python -c pass` / `import seeknal_jupyter` / `import seeknal_jupyter.cli`",
            f"{noop['python']:.3f}s / {noop['import']:.3f}s / {noop['import_cli']:.3f}s",
            "(context)",
            None,
            noop["import_cli"],
        )
    )
    for case in results.get("promote", []):
        rows.append(
            Row(
                f"promote, {case['case']}: lock to commit / whole call "
                "(PromoteResult.seconds / promote())",
                f"{case['commit_ms']:.1f} ms / {case['call_ms']:.1f} ms "
                f"({case['outputs']:,} outputs, {case['mb']:,.1f} MB linked; copying "
                f"them {case['copy_ms']:.1f} ms)",
                "(context)",
                None,
                case["commit_ms"],
            )
        )
    return rows


def _hot(profile: list[dict[str, Any]], count: int = 3) -> str:
    total = profile[0]["total"]
    return "; ".join(
        f"{p['function']} {p['own']:.2f}s own ({100 * p['own'] / total:.0f}%)"
        for p in profile[1 : count + 1]
    )


def fraud_reason(scale: str, data: dict[str, Any]) -> str:
    if data["speedup"] >= TARGETS["fraud_speedup"]:
        return ""
    seq, par = data["sequential"], data["parallel"]
    text = (
        f"parallel was {100 * (1 / data['speedup'] - 1):.0f}% slower. Every DuckDB "
        "connection runs one thread, so only nodes running at once use more than one "
        f"core. The critical path (longest chain of dependent nodes) is "
        f"{seq['critical_seconds']:.2f}s of {seq['work']:.2f}s of node time "
        f"sequentially, so at most "
        f"{seq['work'] / max(seq['critical_seconds'], 1e-9):.2f}x could be won, and "
        f"that chain took {par['critical_seconds']:.2f}s in parallel, sharing the "
        "cores with the nodes beside it"
    )
    if seq["wall"] < 2:
        text += (
            f"; at this size fixed costs (loading, fingerprints: {seq['prepare']:.2f}s; "
            f"schema check: {seq['check_schemas']:.2f}s) are a large part of "
            f"{seq['wall']:.2f}s and the difference is within the machine's noise"
        )
    return text


def dag_reason(dag: dict[str, Any]) -> str:
    med = dag["median"]
    slower = med["parallel_work"] / med["work"] - 1
    text = (
        f"the nodes' own seconds add up to {100 * slower:.0f}% more when "
        f"{dag['workers']} run at once on {dag['cores']} cores than one by one "
        f"({med['parallel_work']:.2f}s against {med['work']:.2f}s: they share the "
        "cores' caches and memory bandwidth with each other and with the run's own "
        "thread); "
        f"executor alone {dag['ratio_executor']:.3f}x the bound; outside the executor "
        f"{med['engine_wall'] - med['executor']:.2f}s (schema check before the run "
        f"{med['check_schemas']:.2f}s); idle worker time inside it "
        f"{med['idle_worker_seconds']:.2f} worker-seconds "
        f"({1000 * med['idle_worker_seconds'] / dag['nodes']:.1f} ms per node)"
    )
    if dag["ratio_engine"] <= TARGETS["dag_bound_ratio"]:
        return ""
    return text


def trivial_reason(trivial: dict[str, Any], mode: str) -> str:
    t = trivial[mode]
    if t["overhead_ms"] <= TARGETS["trivial_overhead_ms"]:
        return ""
    n = trivial["nodes"]
    per = {
        "loading, DAG and fingerprints": t["prepare"],
        "the schema check before the run": t["check_schemas"],
        "the executor beyond the plain loop": t["executor"] - trivial["raw_loop"],
        "the rest (publishing cached nodes, final state save)": t["engine_wall"]
        - t["check_schemas"]
        - t["executor"],
    }
    parts = ", ".join(f"{name} {1000 * sec / n:.2f} ms" for name, sec in per.items())
    return (
        f"per node: {parts}. A node runs 4 DuckDB statements where the loop runs 3 "
        "(its input as a view, dropped after; a DESCRIBE of the query, which keeps "
        "128-bit integers exact and gives the output's columns; the COPY), an fsync "
        "of the written file, a hard link into the generation and a state entry on "
        "the scheduling thread; sequentially the worker and the scheduling thread "
        "take turns, in parallel they overlap. Top own "
        f"time in a sequential profile: {_hot(trivial['profile'])}"
    )


def profile_reason(profile: list[dict[str, Any]], what: str) -> str:
    return f"top own time in {what}: {_hot(profile)}"


def noop_reason(noop: dict[str, Any]) -> str:
    if noop["wall"] <= TARGETS["noop_seconds"]:
        return ""
    slowest = ", ".join(
        f"{m['module']} {m['cumulative_ms']:.0f} ms" for m in noop["import_modules"][:4]
    )
    return (
        f"starting Python and importing the command line takes {noop['import_cli']:.3f}s "
        f"of it (slowest imports: {slowest}); the run itself "
        f"{noop['in_process']:.3f}s, top own time: {_hot(noop['profile'])}"
    )


def machine() -> dict[str, Any]:
    import duckdb

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "duckdb": duckdb.__version__,
        "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def write_reports(out: Path, results: dict[str, Any], quick: bool) -> list[Row]:
    rows = verdicts(results)
    results["table"] = [asdict(r) for r in rows]
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (out / "report.md").write_text(markdown(results, rows, quick))
    return rows


def markdown(results: dict[str, Any], rows: list[Row], quick: bool) -> str:
    info = results["machine"]
    mark = {True: "yes", False: "**no**", None: "—"}
    lines = [
        "# seeknal_jupyter benchmarks",
        "",
        (
            f"{'QUICK (tiny sizes, numbers meaningless) — ' if quick else ''}"
            f"{info['date']}, commit {info['commit']}, Python {info['python']}, "
            f"DuckDB {info['duckdb']}, {info['cpu_count']} cores, {info['platform']}."
        ),
        (
            "Each measurement is a fresh process; times are medians of repeats; "
            "peak memory is the child's max RSS. Written by `benchmarks/run.py`."
        ),
        "",
        "| measure | value | target | met? |",
        "| --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row.measure} | {row.value} | {row.target} | {mark[row.met]} |"
        )
    misses = [r for r in rows if r.met is False]
    lines += ["", "## Misses", ""]
    lines += [f"- **{r.measure}**: {r.reason}" for r in misses] or ["None."]
    lines += ["", "## Details", ""]
    for scale, data in results["fraud"].items():
        lines.append(
            f"- fraud {scale}x (data generated in {data['generate_seconds']:.1f}s): "
            + "; ".join(
                f"{mode} walls {', '.join(f'{w:.2f}' for w in data[mode]['walls'])}s, "
                f"node work {data[mode]['work']:.2f}s, critical path "
                f"{data[mode]['critical_seconds']:.2f}s, peak {data[mode]['peak_rss_mb']:.0f} MB"
                for mode in RUN_MODES
            )
        )
    dag = results["wide_dag"]
    med = dag["median"]
    lines += [
        (
            f"- wide DAG: {dag['nodes']} nodes ({dag['sources']} sources of "
            f"{dag['rows_per_source']:,} rows), {dag['workers']} workers on {dag['cores']} "
            f"cores; sequential {dag['sequential']['wall']:.2f}s, parallel "
            f"{dag['parallel']['wall']:.2f}s (speed-up {dag['speedup']:.2f}x). The bound "
            f"is max(critical path, work / {med['lanes']}) from the paired sequential "
            f"run's node seconds (work {med['work']:.2f}s; the same nodes summed "
            f"{med['parallel_work']:.2f}s in the parallel run). Against the "
            f"bound: whole `Project.run` {dag['ratio_run']:.3f}x, run core (`RunResult.wall_seconds`) "
            f"{dag['ratio_engine']:.3f}x, executor alone {dag['ratio_executor']:.3f}x. "
            f"Scheduling overhead: idle worker time inside the executor "
            f"= workers × executor wall − Σ parallel node seconds = {med['idle_worker_seconds']:.2f} "
            f"worker-seconds ({1000 * med['idle_worker_seconds'] / dag['nodes']:.1f} ms per "
            f"node, includes waiting on the critical path); before the executor "
            f"{med['outside_executor']:.2f}s (load, fingerprints, schema check "
            f"{med['check_schemas']:.2f}s)."
        ),
    ]
    trivial = results["trivial"]
    for mode in ("sequential", "parallel"):
        t = trivial[mode]
        lines.append(
            f"- trivial nodes, {mode}: {t['wall_ms']:.2f} ms/node in all; node seconds "
            f"(summed over workers) {t['node_ms']:.2f} ms/node (the plain loop "
            f"{trivial['raw_ms']:.2f} ms); loading and fingerprints "
            f"{1000 * t['prepare'] / trivial['nodes']:.2f} ms/node; schema "
            f"check {1000 * t['check_schemas'] / trivial['nodes']:.2f} ms/node; "
            f"peak {t['peak_rss_mb']:.0f} MB."
        )
    plan = results["plan"]
    lines.append(
        f"- plan: {plan['nodes']} nodes, {plan['edges']} edges; runs "
        f"{', '.join(f'{p:.2f}' for p in plan['plans'])}s; peak {plan['peak_rss_mb']:.0f} MB; "
        f"importing the package {plan['import']:.2f}s (not counted)."
    )
    for case in results.get("promote", []):
        lines.append(
            f"- promote, {case['case']}: lock to commit "
            f"{', '.join(f'{c:.1f}' for c in case['commits_ms'])} ms, whole call "
            f"{', '.join(f'{c:.1f}' for c in case['calls_ms'])} ms (each a plan, apply "
            "and promote of one changed node; production links every output)"
            + (f"; {case['note']}." if case.get("note") else ".")
        )
    noop = results["noop"]
    lines.append(
        f"- no-op run: walls {', '.join(f'{w:.3f}' for w in noop['walls'])}s; "
        f"of the median {noop['wall']:.3f}s, {noop['import_cli']:.3f}s is starting "
        f"Python and importing the command line and {noop['in_process']:.3f}s the run."
    )
    lines += [
        "",
        "## Where the time goes (cProfile, top own time)",
        "",
        (
            "Worker threads included; waits on locks left out. A DuckDB call counts as "
            "own time of the Python function that makes it (e.g. `build` holds the COPY)."
        ),
        "",
    ]
    for title, profile in (
        (f"{trivial['nodes']} trivial nodes, sequential full run", trivial["profile"]),
        (f"plan of {plan['nodes']} nodes", plan["profile"]),
        ("no-op run (in process, after imports)", noop["profile"]),
    ):
        lines += [f"{title} (total {profile[0]['total']:.2f}s):", ""]
        lines += [
            "| function | calls | own s | cumulative s |",
            "| --- | --- | --- | --- |",
        ]
        lines += [
            f"| `{p['function']}` | {p['calls']} | {p['own']:.3f} | {p['cumulative']:.3f} |"
            for p in profile[1:9]
        ]
        lines.append("")
    lines += ["Slowest imports of `seeknal_jupyter.cli` (cumulative):", ""]
    lines += [
        f"- {m['module']}: {m['cumulative_ms']:.0f} ms" for m in noop["import_modules"]
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------


def report_folder(out: Path | None, quick: bool) -> Path:
    """Where the reports go: ``out``, else benchmarks/results (the committed
    report), or for ``--quick`` the git-ignored benchmarks/results/quick."""
    if out is not None:
        return out
    return HERE / "results" / "quick" if quick else HERE / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat")
    parser.add_argument(
        "--out",
        type=Path,
        help="where the reports go (default: benchmarks/results, with --quick "
        "benchmarks/results/quick)",
    )
    parser.add_argument(
        "--work", type=Path, help="scratch folder (default: OUT/work, deleted after)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument(
        "--render",
        action="store_true",
        help="only rewrite report.md (and the table) from OUT/report.json",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child, args.params, args.result)
        return
    args.out = report_folder(args.out, args.quick)
    if args.render:
        saved = json.loads((args.out / "report.json").read_text())
        write_reports(args.out, saved, saved["quick"])
        return
    sizes = QUICK if args.quick else Sizes()
    work = fresh(args.work or args.out / "work")
    results: dict[str, Any] = {
        "machine": machine(),
        "quick": args.quick,
        "sizes": asdict(sizes),
    }
    started = time.perf_counter()
    try:
        results["fraud"] = measure_fraud(work, sizes)
        results["wide_dag"] = measure_wide_dag(work, sizes)
        results["trivial"] = measure_trivial(work, sizes)
        results["plan"] = measure_plan(work, sizes)
        results["noop"] = measure_noop(work, sizes)
        results["promote"] = measure_promote(work, sizes)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    results["seconds"] = time.perf_counter() - started
    rows = write_reports(args.out, results, args.quick)
    for row in rows:
        print(
            f"{'ok  ' if row.met else 'MISS' if row.met is False else '    '} "
            f"{row.measure}: {row.value}"
        )
    print(f"Reports: {args.out / 'report.md'}, {args.out / 'report.json'}")


if __name__ == "__main__":
    main()

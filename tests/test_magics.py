"""The %seeknal and %%seeknal_node magics on a real IPython shell."""

from __future__ import annotations

import argparse
import io
import logging
import re
import shutil
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.testing.globalipapp import start_ipython
from IPython.utils.capture import capture_output
from traitlets import TraitError

from seeknal_jupyter import cli
from seeknal_jupyter.cells import dump_document
from seeknal_jupyter.errors import RunFailed
from seeknal_jupyter.errors import UsageError as SeeknalUsageError
from seeknal_jupyter.magics import SeeknalMagics
from seeknal_jupyter.progress import ProgressPanel
from seeknal_jupyter.project import Project
from seeknal_jupyter.render import DagPicture
from seeknal_jupyter.report import RunResult, TextReporter
from seeknal_jupyter.yamlfile import read_yaml

FRAUD_IDS = 15


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    shell = shell_instance()
    monkeypatch.chdir(tmp_path)
    shell.run_line_magic("load_ext", "seeknal_jupyter")
    yield shell
    shell.run_line_magic("unload_ext", "seeknal_jupyter")
    shell.config.pop("SeeknalMagics", None)


def shell_instance() -> Any:
    """IPython's test shell (a real TerminalInteractiveShell), started once."""
    start_ipython()
    return InteractiveShell.instance()


def magics(shell: Any) -> SeeknalMagics:
    return shell.magics_manager.registry["SeeknalMagics"]


def current(shell: Any) -> Project:
    """The notebook's project."""
    project = magics(shell).project
    assert project is not None
    return project


def seeknal(shell: Any, line: str) -> Any:
    return shell.run_line_magic("seeknal", line)


def node_cell(shell: Any, line: str, body: str) -> str:
    """Run a %%seeknal_node cell; return the first line it printed."""
    out = io.StringIO()
    with redirect_stdout(out):
        shell.run_cell_magic("seeknal_node", line, body)
    return out.getvalue().splitlines()[0]


def failing_cell(shell: Any, code: str, capsys: pytest.CaptureFixture[str]) -> str:
    """Run a cell that must fail; return what it printed on stderr."""
    capsys.readouterr()
    result = shell.run_cell(code)
    assert isinstance(result.error_in_exec, UsageError), result.error_in_exec
    return capsys.readouterr().err


def test_load_and_unload_register_and_remove_the_magics() -> None:
    shell = shell_instance()
    shell.run_line_magic("load_ext", "seeknal_jupyter")
    assert "seeknal" in shell.magics_manager.magics["line"]
    assert "seeknal_node" in shell.magics_manager.magics["cell"]
    loaded = magics(shell)
    assert loaded in shell.configurables

    shell.run_line_magic("unload_ext", "seeknal_jupyter")

    assert "seeknal" not in shell.magics_manager.magics["line"]
    assert "seeknal_node" not in shell.magics_manager.magics["cell"]
    assert "SeeknalMagics" not in shell.magics_manager.registry
    assert loaded not in shell.configurables
    shell.run_line_magic("load_ext", "seeknal_jupyter")
    assert magics(shell) is not loaded
    shell.run_line_magic("unload_ext", "seeknal_jupyter")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, Any]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _sample(action: argparse.Action) -> list[str]:
    """A value the action accepts, as command-line words."""
    if action.nargs == 0:
        return []
    if action.choices:
        return [min(action.choices)]
    if action.type is int or action.metavar == "N":
        return ["2"]
    return [action.dest.upper()]


def command_lines(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """Each sub-command with its positionals, once per option and with all of them
    (not the hidden ones, which a command refuses)."""
    for name, sub in _subcommands(parser).items():
        words = (*prefix, name)
        if _subcommands(sub):
            yield from command_lines(sub, words)
            continue
        positionals = [
            word
            for action in sub._actions
            if not action.option_strings
            for word in _sample(action)
        ]
        options = [
            [option, *_sample(action)]
            for action in sub._actions
            if action.option_strings
            and action.dest != "help"
            and action.help != argparse.SUPPRESS
            for option in action.option_strings
        ]
        required = [
            [action.option_strings[0], *_sample(action)]
            for action in sub._actions
            if action.option_strings and action.required
        ]
        base = [*words, *positionals, *(w for r in required for w in r)]
        yield base
        for option in options:
            yield [*base, *option]
        yield ["-v", *base, *(w for o in options for w in o if o not in required)]


def test_every_command_line_parses_the_same_in_the_magic() -> None:
    lines = list(command_lines(cli.build_parser()))
    commands = {line[0] for line in lines} | {
        line[1] for line in lines if line[0] == "-v"
    }
    assert {"init", "plan", "parse", "run", "show", "dag"} <= commands
    assert any("--max-workers" in line for line in lines)
    for words in lines:
        shell_args = cli.parse(words)
        magic_args = cli.parse(" ".join(words), notebook=True)
        assert vars(shell_args) == vars(magic_args), words
    notebook_only = set(_subcommands(cli.build_parser(notebook=True))) - set(
        _subcommands(cli.build_parser())
    )
    assert "project" in notebook_only


def _help(words: list[str]) -> list[str]:
    """A command line ending in --help, as the words of the usage and help it prints."""
    return " ".join(words).replace("%seeknal", "seeknal").split()


def test_every_command_and_flag_gets_the_same_help_through_the_magic(
    ip: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = list(command_lines(cli.build_parser()))
    assert len(lines) > 50
    for words in lines:
        command = words[1] if words[0] == "-v" else words[0]
        capsys.readouterr()
        with pytest.raises(SystemExit):
            cli.main([*words, "--help"])
        printed = capsys.readouterr().out
        assert printed.startswith(f"usage: seeknal {command}"), words
        assert seeknal(ip, " ".join([*words, "--help"])) is None
        shown = capsys.readouterr().out
        assert shown.startswith(f"usage: %seeknal {command}"), words
        assert _help([shown]) == _help([printed]), words


def test_dry_runs_of_every_selection_print_the_same_through_the_magic(
    ip: Any, fraud: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seeknal(ip, f"project {fraud}")
    for line in (
        "run --dry-run",
        "run --dry-run --full --parallel",
        "run --dry-run --max-workers 3 --nodes +txn_features",
        "run --dry-run --tags fraud --types source",
        "run --show-plan --nodes +training_data",
    ):
        printed = _cli(capsys, line, fraud)
        shown = seeknal(ip, line)
        assert printed.strip() == str(shown), line
    assert "Dry run (incremental, 3 workers): 9 to run, 0 cached" in _cli(
        capsys, "run --dry-run --max-workers 3 --nodes +txn_features", fraud
    )


def _cli(capsys: pytest.CaptureFixture[str], line: str, project: Path) -> str:
    capsys.readouterr()
    status = cli.main([*line.split(), "--project", str(project)])
    out = capsys.readouterr().out
    assert status == 0, out
    return out


def _cached(project: Path) -> list[str]:
    return Project(project).execution_plan().cached


def test_the_command_line_and_the_magic_do_the_same(
    ip: Any,
    fraud: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    twin = Path(shutil.copytree(fraud, tmp_path / "twin"))
    seeknal(ip, f"project {twin}")

    printed = _cli(capsys, "plan", fraud)
    manifest = seeknal(ip, "plan")
    assert "Nodes: 15  Edges: 16  Layers: 4" in printed
    assert "Nodes: 15  Edges: 16  Layers: 4" in str(manifest)

    printed = _cli(capsys, "run --dry-run --max-workers 3", fraud)
    assert printed.strip() == str(seeknal(ip, "run --dry-run --max-workers 3"))

    for line in (
        "run --parallel --max-workers 2 --nodes +txn_features",
        "run --types source --tags fraud",
        "run --fail-fast --nodes txn_enriched+",
    ):
        _cli(capsys, line, fraud)
        with capture_output():
            result = seeknal(ip, line)
        assert isinstance(result, RunResult)
        assert result.ok
        assert _cached(fraud) == _cached(twin), line
    assert len(_cached(twin)) == FRAUD_IDS

    printed = _cli(capsys, "show training_data --limit 3", fraud)
    frame = seeknal(ip, "show training_data --limit 3")
    assert isinstance(frame, pd.DataFrame)
    width = shutil.get_terminal_size().columns
    assert printed.strip() == frame.to_string(line_width=width).strip()

    _cli(capsys, f"dag --output {tmp_path / 'cli.svg'}", fraud)
    picture = seeknal(ip, f"dag --output {tmp_path / 'magic.svg'}")
    assert isinstance(picture, DagPicture)
    for svg in ("cli.svg", "magic.svg"):
        assert _drawn_nodes((tmp_path / svg).read_text()) == FRAUD_IDS


def _drawn_nodes(svg: str) -> int:
    titles = re.findall(r'<g id="node\d+" class="node">\s*<title>([^<]*)</title>', svg)
    return sum(1 for t in titles if not t.startswith("__legend__"))


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("%seeknal", "the following arguments are required: COMMAND"),
        ("%seeknal fly", "invalid choice: 'fly'"),
        ("%seeknal run --bogus", "unrecognized arguments: --bogus"),
        ("%seeknal run --max-workers many", "invalid int value: 'many'"),
        ("%seeknal show", "the following arguments are required: NODE"),
        ("%seeknal run --nodes 'unclosed", "No closing quotation"),
        ("%seeknal run --max-workers 0", "--max-workers must be 1 or more, got 0"),
        ("%seeknal show no_such_node", "no node named 'no_such_node'"),
        ("%seeknal show training_data --limit -1", "must be 0 or more, got -1"),
        ("%seeknal dag --output dag.png", "only SVG can be written"),
        ("%seeknal dag --output /no/such/dir/x.svg", "cannot write /no/such/dir"),
        ("%seeknal project /no/such/folder", "/no/such/folder does not exist"),
        ("%%seeknal_node transform\nSELECT 1", "the following arguments are required"),
    ],
)
def test_usage_errors_are_one_line(
    ip: Any, fraud: Path, capsys: pytest.CaptureFixture[str], line: str, expected: str
) -> None:
    seeknal(ip, f"project {fraud}")
    err = failing_cell(ip, line, capsys)
    assert expected in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


def test_a_broken_project_lists_its_problems_without_a_traceback(
    ip: Any, fraud: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seeknal(ip, f"project {fraud}")
    node_file = fraud / "seeknal/transforms/10_transform_merchant_risk.yml"
    node_file.write_text(
        node_file.read_text().replace("ref: source.merchant_data", "ref: merchant_dta")
    )
    err = failing_cell(ip, "%seeknal plan", capsys)
    assert "Traceback" not in err
    assert "1 problem in the project" in err
    assert "10_transform_merchant_risk.yml" in err
    assert "unknown input 'merchant_dta'" in err
    assert "did you mean" in err


def test_init_makes_the_new_project_current(ip: Any, tmp_path: Path) -> None:
    with capture_output() as shown:
        made = seeknal(ip, "init --example fraud-detection fresh")
    assert made.folder == tmp_path / "fresh"
    assert "It is now the notebook's project" in shown.stdout
    assert magics(ip).project is not None
    assert current(ip).root == tmp_path / "fresh"
    assert len(seeknal(ip, "plan").dag.nodes) == FRAUD_IDS


def test_project_is_loaded_once_and_picks_up_yaml_edits(
    ip: Any, fraud: Path, tmp_path: Path
) -> None:
    with capture_output() as shown:
        project = seeknal(ip, f"project {fraud}")
    assert isinstance(project, Project)
    assert shown.stdout.strip() == (f"Project fraud at {fraud}: 15 nodes in 4 layers")
    assert seeknal(ip, "project") is project

    (fraud / "seeknal/transforms/99_extra.yml").write_text(
        "kind: transform\nname: extra\ninputs:\n  - ref: source.card_data\n"
        "transform: SELECT card_id FROM source.card_data\n"
    )
    manifest = seeknal(ip, "plan")
    assert len(manifest.dag.nodes) == FRAUD_IDS + 1
    assert magics(ip).project is project


def test_the_working_folder_is_the_default_project(
    ip: Any, fraud: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(fraud)
    assert len(seeknal(ip, "plan").dag.nodes) == FRAUD_IDS
    assert magics(ip).project is not None
    assert current(ip).root == fraud


def add_failing_card_feed(shell: Any) -> None:
    """A cell node whose every run fails: DuckDB's error('card feed is down')."""
    node_cell(
        shell,
        "transform card_feed --inputs card_data",
        "SELECT card_id, error('card feed is down') AS status FROM card_data",
    )


def test_run_returns_the_result_and_a_failure_prints_the_summary_once(
    ip: Any, fraud: Path
) -> None:
    seeknal(ip, f"project {fraud}")
    with capture_output() as shown:
        result = seeknal(ip, "run --parallel")
    assert isinstance(result, RunResult)
    assert result.count("success") == FRAUD_IDS
    assert "[15/15] SUCCESS" in shown.stdout
    assert magics(ip).last_result is result

    add_failing_card_feed(ip)
    with capture_output(display=True) as shown:
        failed = ip.run_cell("%seeknal run --parallel")
    assert isinstance(failed.error_in_exec, RunFailed)
    assert str(failed.error_in_exec).startswith(
        "Run FAILED: 1 executed (1 failed), 15 cached of 16 nodes"
    )
    assert "\n" not in str(failed.error_in_exec)
    last = magics(ip).last_result
    assert last is not None
    assert last.statuses()["transform.card_feed"] == "failed"
    first = last.nodes["transform.card_feed"].error
    assert first is not None and first.startswith("transform.card_feed (<cell ")
    assert str(failed.error_in_exec) == f"{last.headline()}; first failure: {first}"
    # the terminal shell prints IPython's one-line rendering of the error after it
    assert shown.stdout.endswith(f"{last}\nRunFailed: {failed.error_in_exec}\n")
    assert shown.stdout.count("nodes: 16, layers: 4, executed: 1,") == 1
    assert "<RunResult" not in shown.stdout
    assert shown.outputs == []


def panel_displays(shown: Any) -> list[dict[str, Any]]:
    """What each display of a captured cell showed, and whether it was an update."""
    return [{"update": o.update, **o.data} for o in shown.outputs]


def summaries(shown: Any) -> list[str]:
    return [o.data["text/html"] for o in shown.outputs if "text/html" in o.data]


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ("%seeknal show transactions --limit 1", True),
        ("%seeknal show transactions --limit 1;", False),
        ("%seeknal dag ;", False),
        ("%seeknal project .;", False),
        ("%seeknal project .", True),
    ],
)
def test_a_semicolon_ending_the_line_hides_the_result(
    ip: Any, fraud: Path, monkeypatch: pytest.MonkeyPatch, cell: str, shown: bool
) -> None:
    """As after any expression: the command runs, its result is not displayed."""
    monkeypatch.chdir(fraud)
    seeknal(ip, "project .")

    with capture_output() as captured:
        done = ip.run_cell(cell, store_history=True)

    assert done.error_in_exec is None
    assert ("Out[" in captured.stdout) is shown


@pytest.mark.parametrize(
    "cell",
    [
        "r = %seeknal run --parallel --full",
        "%seeknal run --parallel --full;",
        "%seeknal run --parallel --full",
        "r = %seeknal run --parallel --full\nr",
    ],
)
def test_the_panel_becomes_the_summary_shown_once_however_the_run_is_written(
    ip: Any, fraud: Path, cell: str
) -> None:
    seeknal(ip, f"project {fraud}")
    ip.run_line_magic("config", "SeeknalMagics.progress = 'widget'")

    with capture_output(display=True) as shown:
        done = ip.run_cell(cell)

    assert done.error_in_exec is None
    result = magics(ip).last_result
    assert result is not None and result.ok
    (panel, summary) = panel_displays(shown)
    assert panel["update"] is False
    assert "application/vnd.jupyter.widget-view+json" in panel
    assert summary["update"] is True
    assert sorted(summary) == ["text/html", "text/plain", "update"]
    assert summary["text/plain"] == str(result)
    assert summary["text/html"] == result._repr_html_()
    assert "Run succeeded: 15 executed, 0 cached of 15 nodes" in summary["text/html"]
    assert summary["text/html"].count(">SUCCESS<") == FRAUD_IDS
    assert not result.summary_shown

    ip.user_ns["later"] = result
    with capture_output(display=True) as again:
        ip.run_cell("later")
    assert summaries(again) == [result._repr_html_()]
    assert again.outputs[0].data["text/plain"] == repr(result)


def test_a_failed_run_in_the_panel_is_summarised_once(ip: Any, fraud: Path) -> None:
    seeknal(ip, f"project {fraud}")
    ip.run_line_magic("config", "SeeknalMagics.progress = 'widget'")
    add_failing_card_feed(ip)

    with capture_output(display=True) as shown:
        failed = ip.run_cell("r = %seeknal run --parallel")

    assert isinstance(failed.error_in_exec, RunFailed)
    (summary,) = summaries(shown)
    assert "Run FAILED: 16 executed (1 failed), 0 cached of 16 nodes" in summary
    assert "card feed is down" in summary
    assert shown.outputs[-1].update


def test_hints_name_the_magic_not_the_command_line(
    ip: Any, fraud: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seeknal(ip, f"project {fraud}")

    err = failing_cell(ip, "%seeknal dag --plan dev", capsys)
    assert err.strip() == (
        "UsageError: environment 'dev' has no plan yet (environments: none); "
        "make one with: %seeknal plan dev"
    )
    err = failing_cell(ip, "%seeknal run --env dev", capsys)
    assert err.strip().endswith("; make one with: %seeknal plan dev")
    err = failing_cell(ip, "%seeknal show txn_enriched", capsys)
    assert err.strip() == (
        "UsageError: transform.txn_enriched has no output in production yet; run "
        "it first: %seeknal run --nodes +txn_enriched"
    )
    (fraud / "seeknal").rename(fraud / "nodes")
    err = failing_cell(ip, "%seeknal plan", capsys)
    assert "%seeknal init --example fraud-detection DIR" in err
    assert " seeknal init" not in err


def test_a_lock_held_by_the_command_line_keeps_its_name(
    ip: Any, fraud: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seeknal(ip, f"project {fraud}")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(fraud / "target")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        err = failing_cell(ip, "%seeknal run", capsys)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(10)
    assert f"is being written by process {holder.pid} ('seeknal run', since" in err


HOLD_LOCK = """
import sys
from pathlib import Path
from seeknal_jupyter.store import Store
with Store(Path(sys.argv[1])).writing("seeknal run"):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def test_show_returns_a_dataframe(ip: Any, fraud: Path) -> None:
    seeknal(ip, f"project {fraud}")
    with capture_output():
        seeknal(ip, "run --parallel")
    frame = seeknal(ip, "show txn_enriched --limit 7")
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) == 7
    assert "amount_zscore" in frame.columns
    assert len(seeknal(ip, "show source.transactions --limit 10000")) == 10_000


def test_dag_draws_kinds_then_statuses_after_a_run(ip: Any, fraud: Path) -> None:
    seeknal(ip, f"project {fraud}")
    picture = seeknal(ip, "dag")
    assert isinstance(picture, DagPicture)
    assert picture.svg is not None
    assert _drawn_nodes(picture.svg) == FRAUD_IDS
    assert "success" not in picture.text

    with capture_output():
        result = seeknal(ip, "run --parallel")
    picture = seeknal(ip, "dag")
    assert picture.text.count("[success · ") == FRAUD_IDS
    assert result.critical_path
    for node_id in result.critical_path:
        assert re.search(rf"{re.escape(node_id)}\b.*critical", picture.text)
    assert picture.text.count("critical") == len(result.critical_path)


def test_dag_falls_back_to_text_with_the_text_engine(ip: Any, fraud: Path) -> None:
    seeknal(ip, f"project {fraud}")
    ip.run_line_magic("config", "SeeknalMagics.dag_engine = 'text'")
    picture = seeknal(ip, "dag")
    assert picture.svg is None
    assert picture.engine == "text"
    assert "15 nodes in 4 layers" in picture.text


def test_config_sets_the_default_worker_count_and_progress(
    ip: Any, fraud: Path
) -> None:
    seeknal(ip, f"project {fraud}")
    ip.run_line_magic("config", "SeeknalMagics.max_workers = 3")
    assert magics(ip).max_workers == 3
    with capture_output():
        assert seeknal(ip, "run --parallel --full").workers == 3
        assert seeknal(ip, "run --parallel --full --max-workers 2").workers == 2
        assert seeknal(ip, "run --full").workers == 1

    assert isinstance(magics(ip)._reporter(), TextReporter)
    ip.run_line_magic("config", "SeeknalMagics.progress = 'widget'")
    assert type(magics(ip)._reporter()).__name__ == "ProgressPanel"


SPENDERS_SQL = (
    "SELECT customer_id, sum(amount) AS total\nFROM transactions\nGROUP BY customer_id"
)


def test_a_sql_cell_adds_a_node_and_running_it_again_replaces_it(
    ip: Any, fraud: Path
) -> None:
    seeknal(ip, f"project {fraud}")
    said = node_cell(ip, "transform spenders --inputs transactions", SPENDERS_SQL)
    assert said == ("Added transform.spenders: layer 2, inputs source.transactions.")
    said = node_cell(
        ip,
        "transform spenders --inputs source.transactions",
        SPENDERS_SQL.replace("sum(amount)", "max(amount)"),
    )
    assert said.startswith("Replaced transform.spenders (was an earlier cell)")

    project = magics(ip).project
    assert project is not None
    assert list(project.cells) == ["transform.spenders"]
    dag = project.dag()
    assert len(dag.nodes) == FRAUD_IDS + 1
    assert "max(amount)" in (dag.nodes["transform.spenders"].sql or "")


def test_cell_nodes_and_file_nodes_run_together(ip: Any, fraud: Path) -> None:
    seeknal(ip, f"project {fraud}")
    node_cell(ip, "transform spenders --inputs transactions", SPENDERS_SQL)
    node_cell(
        ip,
        "transform spender_ranks --inputs spenders,user_profiles",
        "SELECT s.customer_id, s.total, u.country,\n"
        "       rank() OVER (ORDER BY s.total DESC) AS spend_rank\n"
        "FROM spenders s JOIN user_profiles u USING (customer_id)",
    )
    with capture_output():
        result = seeknal(ip, "run --parallel")
    assert result.count("success") == FRAUD_IDS + 2
    assert result.nodes["transform.spender_ranks"].layer == 2

    ranks = seeknal(ip, "show spender_ranks --limit 100000")
    assert ranks["spend_rank"].min() == 1
    transactions = Project(fraud).show("source.transactions", limit=None)
    expected = transactions.groupby("customer_id")["amount"].sum().sort_index()
    totals = ranks.set_index("customer_id")["total"].sort_index()
    assert list(totals.index) == list(expected.index)
    assert (totals - expected).abs().max() < 1e-6


def test_a_yaml_cell_defines_a_node_and_replaces_a_file_node(
    ip: Any, fraud: Path
) -> None:
    seeknal(ip, f"project {fraud}")
    said = node_cell(
        ip,
        "transform merchant_risk",
        "description: merchants only, from a cell\n"
        "inputs:\n  - ref: source.merchant_data\n"
        "transform: |\n  SELECT merchant_id FROM source.merchant_data\n",
    )
    assert said.startswith(
        "Replaced transform.merchant_risk (was "
        "seeknal/transforms/10_transform_merchant_risk.yml:1)"
    )
    node = current(ip).dag().nodes["transform.merchant_risk"]
    assert node.file == "<cell transform.merchant_risk>"
    assert node.spec["description"] == "merchants only, from a cell"
    assert node.inputs == ("source.merchant_data",)


def test_an_invalid_cell_is_reported_in_one_line_and_not_kept(
    ip: Any, fraud: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seeknal(ip, f"project {fraud}")
    node_cell(ip, "transform spenders --inputs transactions", SPENDERS_SQL)

    err = failing_cell(
        ip, "%%seeknal_node transform spenders --inputs transactons\nSELECT 1", capsys
    )
    assert err.strip() == (
        "UsageError: transform.spenders not added: <cell transform.spenders>:1: "
        "transform.spenders: unknown input 'transactons' (did you mean "
        "'source.transactions'?); the earlier cell's version stays"
    )
    kept = current(ip).cells["transform.spenders"]
    assert kept["transform"].startswith("SELECT customer_id")

    err = failing_cell(ip, "%%seeknal_node transform fresh\nkind: source\n", capsys)
    assert "the body says kind: source, the magic line says transform" in err
    err = failing_cell(ip, "%%seeknal_node source raw\nSELECT 1", capsys)
    assert "a source is described in YAML" in err
    err = failing_cell(ip, "%%seeknal_node transform t\ninputs: [a\n", capsys)
    assert "invalid YAML" in err
    assert list(current(ip).cells) == ["transform.spenders"]


def test_save_writes_a_file_that_loads_back_to_the_same_node(
    ip: Any, fraud: Path
) -> None:
    seeknal(ip, f"project {fraud}")
    said = node_cell(
        ip, "transform spenders --inputs transactions --save", SPENDERS_SQL
    )
    assert said.endswith("Saved to seeknal/transforms/spenders.yml.")
    project = current(ip)
    assert project.cells == {}
    saved = fraud / "seeknal/transforms/spenders.yml"
    document = read_yaml(saved.read_text(), "spenders.yml").documents[0].data
    assert document == {
        "kind": "transform",
        "name": "spenders",
        "inputs": [{"ref": "transactions"}],
        "transform": SPENDERS_SQL + "\n",
    }
    fresh = Project(fraud).dag().nodes["transform.spenders"]
    assert fresh.file == "seeknal/transforms/spenders.yml"
    assert fresh.inputs == ("source.transactions",)

    node_cell(
        ip,
        "transform merchant_risk --save",
        "inputs:\n  - ref: source.merchant_data\n"
        "transform: SELECT merchant_id FROM source.merchant_data\n",
    )
    rewritten = fraud / "seeknal/transforms/10_transform_merchant_risk.yml"
    assert "SELECT merchant_id FROM source.merchant_data" in rewritten.read_text()
    assert not (fraud / "seeknal/transforms/merchant_risk.yml").exists()
    assert len(Project(fraud).dag().nodes) == FRAUD_IDS + 1


def test_dump_document_keeps_sql_as_a_block() -> None:
    text = dump_document({"kind": "transform", "transform": "SELECT 1\nFROM t\n"})
    assert text == "kind: transform\ntransform: |\n  SELECT 1\n  FROM t\n"


def test_replacing_a_node_says_how_it_classifies_against_production(
    ip: Any, fraud: Path
) -> None:
    seeknal(ip, f"project {fraud}")
    with capture_output():
        seeknal(ip, "run --parallel")
    text = (fraud / "seeknal/transforms/10_transform_merchant_risk.yml").read_text()
    out = io.StringIO()
    with redirect_stdout(out):
        ip.run_cell_magic(
            "seeknal_node",
            "transform merchant_risk",
            text.replace("owner: ", "owner: cell-", 1),
        )
    said = out.getvalue().splitlines()
    assert said[0].startswith("Replaced transform.merchant_risk (was seeknal/")
    assert said[1].startswith("transform.merchant_risk against production: METADATA")


def test_dag_with_a_plan_colours_nodes_by_change_class(ip: Any, fraud: Path) -> None:
    seeknal(ip, f"project {fraud}")
    with capture_output():
        seeknal(ip, "run --parallel")
    node_file = fraud / "seeknal/feature_groups/14_feature_group_user_risk.yml"
    node_file.write_text(node_file.read_text().replace("owner:", "owner: x\n#", 1))
    with capture_output():
        seeknal(ip, "plan dev")
    picture = seeknal(ip, "dag --plan dev")
    assert picture.svg is not None
    assert _drawn_nodes(picture.svg) == FRAUD_IDS
    assert "feature_group.user_risk  <- " in picture.text
    assert re.search(r"feature_group\.user_risk .*\[METADATA\]", picture.text)
    assert picture.text.count("[UNCHANGED]") == FRAUD_IDS - 1


def test_applying_an_environment_shows_progress_like_a_run(
    ip: Any, fraud: Path
) -> None:
    seeknal(ip, f"project {fraud}")
    with capture_output():
        seeknal(ip, "run --parallel")
    node_file = fraud / "seeknal/feature_groups/14_feature_group_user_risk.yml"
    node_file.write_text(node_file.read_text().replace("SELECT", "SELECT 1 AS one,", 1))
    with capture_output():
        seeknal(ip, "plan dev")
    with capture_output() as shown:
        applied = seeknal(ip, "env apply dev --parallel")
    assert isinstance(applied, RunResult)
    assert applied.ok
    assert "SUCCESS   feature_group.user_risk" in shown.stdout
    assert magics(ip).last_result is applied


def test_a_large_dag_collapses_by_layer_and_kind(ip: Any, tmp_path: Path) -> None:
    folder = tmp_path / "wide" / "seeknal"
    folder.mkdir(parents=True)
    (tmp_path / "wide" / "data.csv").write_text("x\n1\n")
    documents = ["kind: source\nname: raw\nsource: csv\ntable: data.csv\n"] + [
        f"kind: transform\nname: t{i}\ninputs: [{{ref: source.raw}}]\n"
        "transform: SELECT x FROM source.raw\n"
        for i in range(400)
    ]
    (folder / "nodes.yml").write_text("---\n".join(documents))
    seeknal(ip, f"project {tmp_path / 'wide'}")
    ip.run_line_magic("config", "SeeknalMagics.dag_max_nodes = 100")

    picture = seeknal(ip, "dag")

    assert "collapsed: 401 nodes shown as 2 groups" in picture.text
    assert "transform × 400" in picture.text
    assert picture.svg is not None


def test_sql_that_does_not_bind_is_not_added(
    ip: Any, fraud: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seeknal(ip, f"project {fraud}")
    node_cell(ip, "transform spenders --inputs transactions", SPENDERS_SQL)

    err = failing_cell(
        ip,
        "%%seeknal_node transform spenders --inputs transactions\n"
        "SELECT customer_id, sum(amountt) AS total FROM transactions GROUP BY 1",
        capsys,
    )
    assert err.startswith(
        "UsageError: transform.spenders not added: <cell transform.spenders>:1: "
        'transform.spenders: Binder Error: Referenced column "amountt" not found'
    )
    assert "DuckDB's candidates are the closest" in err
    assert err.rstrip().endswith("; the earlier cell's version stays")
    assert len(err.strip().splitlines()) == 1
    assert current(ip).cells["transform.spenders"]["transform"] == (SPENDERS_SQL + "\n")

    err = failing_cell(
        ip,
        "%%seeknal_node transform rich --inputs spenders\n"
        "SELECT customer_id FROM spenders WHERE totl > 1000",
        capsys,
    )
    assert 'Referenced column "totl" not found' in err
    assert "the earlier cell's version stays" not in err
    assert list(current(ip).cells) == ["transform.spenders"]


def test_sql_binds_against_the_outputs_of_built_inputs(
    ip: Any, fraud: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seeknal(ip, f"project {fraud}")
    with capture_output():
        seeknal(ip, "run --parallel")
    said = node_cell(
        ip,
        "transform big_spenders --inputs txn_features",
        "SELECT customer_id, max(txn_amount) AS largest FROM txn_features GROUP BY 1",
    )
    assert said == (
        "Added transform.big_spenders: layer 4, inputs feature_group.txn_features."
    )
    err = failing_cell(
        ip,
        "%%seeknal_node transform odd --inputs txn_features\n"
        "SELECT no_such_feature FROM txn_features",
        capsys,
    )
    assert 'Referenced column "no_such_feature" not found' in err
    assert sorted(current(ip).cells) == ["transform.big_spenders"]


def test_a_cell_node_is_removed_with_remove(
    ip: Any, fraud: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seeknal(ip, f"project {fraud}")
    node_cell(ip, "transform spenders --inputs transactions", SPENDERS_SQL)
    node_cell(
        ip,
        "transform top --inputs spenders",
        "SELECT * FROM spenders ORDER BY total DESC LIMIT 10",
    )
    node_cell(
        ip,
        "transform merchant_risk",
        "inputs:\n  - ref: source.merchant_data\n"
        "transform: SELECT merchant_id FROM source.merchant_data\n",
    )

    err = failing_cell(
        ip, "%%seeknal_node transform spenders --remove\n" + SPENDERS_SQL, capsys
    )
    assert err.strip() == (
        "UsageError: transform.spenders not removed: transform.top reads it; "
        "remove or change that node first"
    )
    assert node_cell(ip, "transform top --remove", "SELECT 1") == (
        "Removed transform.top, defined in a cell."
    )
    assert node_cell(ip, "transform spenders --remove", SPENDERS_SQL) == (
        "Removed transform.spenders, defined in a cell."
    )
    assert node_cell(ip, "transform merchant_risk --remove", "kind: transform") == (
        "Removed the cell's transform.merchant_risk; "
        "seeknal/transforms/10_transform_merchant_risk.yml:1 defines it again."
    )
    assert current(ip).cells == {}
    assert len(current(ip).dag().nodes) == FRAUD_IDS
    err = failing_cell(
        ip, "%%seeknal_node transform txn_enriched --remove\nSELECT 1", capsys
    )
    assert err.strip() == (
        "UsageError: transform.txn_enriched is defined in "
        "seeknal/transforms/09_transform_txn_enriched.yml:1, not by a cell or its "
        "--save; to remove it, delete it from that file"
    )


def test_remove_on_the_line_of_a_saved_cell_deletes_its_file(
    ip: Any, fraud: Path
) -> None:
    seeknal(ip, f"project {fraud}")
    line = "transform spenders --inputs transactions --save"
    assert node_cell(ip, line, SPENDERS_SQL).endswith(
        "Saved to seeknal/transforms/spenders.yml."
    )
    assert (fraud / "seeknal/transforms/spenders.yml").is_file()

    said = node_cell(ip, f"{line} --remove", SPENDERS_SQL)

    assert said == (
        "Removed transform.spenders and deleted its file "
        "seeknal/transforms/spenders.yml."
    )
    assert not (fraud / "seeknal/transforms/spenders.yml").exists()
    assert len(current(ip).dag().nodes) == FRAUD_IDS
    assert len(Project(fraud).dag().nodes) == FRAUD_IDS


def test_a_cell_that_breaks_downstream_nodes_says_so_at_once(
    ip: Any, fraud: Path
) -> None:
    seeknal(ip, f"project {fraud}")
    with capture_output():
        seeknal(ip, "run --parallel")
    out = io.StringIO()
    with redirect_stdout(out):
        ip.run_cell_magic(
            "seeknal_node",
            "transform merchant_risk",
            "inputs:\n  - ref: source.merchant_data\n"
            "transform: SELECT merchant_id FROM source.merchant_data\n",
        )

    said = out.getvalue().splitlines()
    assert said[0] == (
        "Replaced transform.merchant_risk (was "
        "seeknal/transforms/10_transform_merchant_risk.yml:1): layer 2, inputs "
        "source.merchant_data."
    )
    assert said[1].startswith("transform.merchant_risk against production: BREAKING")
    assert "would run as DEPENDENT" not in said[1]
    assert said[2].startswith(
        "warning: feature_group.txn_features "
        "(seeknal/feature_groups/13_feature_group_txn_features.yml:24) no longer "
        'binds: Binder Error: Table "m" does not have a column named '
        '"merchant_risk_score"'
    )
    assert said[3] == (
        "Every plan and run fails until it binds again: change "
        "transform.merchant_risk or feature_group.txn_features."
    )
    assert len(said) == 4
    assert "transform.merchant_risk" in current(ip).cells


def test_the_python_api_adds_removes_and_saves_cell_nodes(fraud: Path) -> None:
    project = Project(fraud)
    Project(fraud).run()

    change = project.add_node(
        "transform", "spenders", sql=SPENDERS_SQL, inputs=["transactions"]
    )
    assert (change.node_id, change.replaced, change.layer) == (
        "transform.spenders",
        None,
        1,
    )
    assert change.classification == (
        "transform.spenders against production: ADDED (production has no output for it)"
    )
    replaced = project.add_node(
        "transform",
        "merchant_risk",
        yaml="inputs:\n  - ref: source.merchant_data\n"
        "transform: SELECT merchant_id, 1 AS one FROM source.merchant_data\n",
    )
    assert replaced.replaced == "seeknal/transforms/10_transform_merchant_risk.yml:1"
    assert replaced.classification.startswith(
        "transform.merchant_risk against production: BREAKING ("
    )
    assert sorted(project.cells) == ["transform.merchant_risk", "transform.spenders"]

    assert project.save_node("transform.spenders") == Path(
        "seeknal/transforms/spenders.yml"
    )
    assert sorted(project.cells) == ["transform.merchant_risk"]
    removal = project.remove_node("merchant_risk")
    assert removal.file_node == "seeknal/transforms/10_transform_merchant_risk.yml:1"
    assert project.cells == {}
    assert len(Project(fraud).dag().nodes) == FRAUD_IDS + 1
    with pytest.raises(SeeknalUsageError, match="not both"):
        project.add_node("transform", "x", sql="SELECT 1", yaml="transform: SELECT 1")


def test_rerunning_project_for_the_same_folder_keeps_the_cell_nodes(
    ip: Any, fraud: Path, tmp_path: Path
) -> None:
    seeknal(ip, f"project {fraud}")
    node_cell(ip, "transform spenders --inputs transactions", SPENDERS_SQL)
    node_cell(
        ip,
        "transform top --inputs spenders",
        "SELECT * FROM spenders ORDER BY total DESC LIMIT 10",
    )
    project = current(ip)

    with capture_output() as shown:
        again = seeknal(ip, f"project {fraud}")
    assert again is project
    assert shown.stdout.strip() == (
        f"Project fraud at {fraud}: 17 nodes in 4 layers; already the notebook's "
        "project, 2 cell nodes kept"
    )
    with capture_output():
        result = seeknal(ip, f"run --project {fraud}")
    assert len(result.nodes) == FRAUD_IDS + 2
    assert result.statuses()["transform.top"] == "success"

    other = Path(shutil.copytree(fraud, tmp_path / "other fraud"))
    shutil.rmtree(other / "target")
    with capture_output() as shown:
        seeknal(ip, f"project '{other}'")
    assert shown.stdout.strip() == (
        f"Project other fraud at {other}: 15 nodes in 4 layers; 2 cell nodes left "
        f"with fraud at {fraud} (%seeknal project {fraud} brings them back)"
    )
    assert current(ip).cells == {}
    with capture_output() as shown:
        back = seeknal(ip, f"project {fraud}")
    assert back is project
    assert shown.stdout.strip() == f"Project fraud at {fraud}: 17 nodes in 4 layers"
    with capture_output() as shown:
        seeknal(ip, f"project '{other}'")
    assert shown.stdout.strip().endswith(f"(%seeknal project {fraud} brings them back)")


def test_the_hint_to_come_back_quotes_a_folder_with_a_space(
    ip: Any, fraud: Path, tmp_path: Path
) -> None:
    spaced = Path(shutil.copytree(fraud, tmp_path / "my fraud"))
    seeknal(ip, f'project "{spaced}"')
    node_cell(ip, "transform spenders --inputs transactions", SPENDERS_SQL)
    with capture_output() as shown:
        seeknal(ip, f"project {fraud}")
    hint = f"%seeknal project '{spaced}'"
    assert shown.stdout.strip().endswith(f"({hint} brings them back)")
    with capture_output():
        assert seeknal(ip, hint.removeprefix("%seeknal ")) is not None
    assert list(current(ip).cells) == ["transform.spenders"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "project {file}",
            (
                "UsageError: {file} is a file, not a folder; give the project folder "
                "(the one holding seeknal/)"
            ),
        ),
        (
            "project {empty}",
            (
                "UsageError: no seeknal/ folder in {empty}: load a project with "
                "%seeknal project PATH, or write one with %seeknal init --example "
                "fraud-detection DIR"
            ),
        ),
        (
            "plan --project {empty}",
            (
                "UsageError: no seeknal/ folder in {empty}: load a project with "
                "%seeknal project PATH, or write one with %seeknal init --example "
                "fraud-detection DIR"
            ),
        ),
    ],
)
def test_a_file_or_a_folder_without_seeknal_is_refused_in_one_line(
    ip: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    line: str,
    expected: str,
) -> None:
    places = {"file": tmp_path / "notes.txt", "empty": tmp_path / "empty"}
    places["file"].write_text("not a project\n")
    places["empty"].mkdir()
    err = failing_cell(ip, "%seeknal " + line.format(**places), capsys)
    assert err.strip() == expected.format(**places)
    assert magics(ip).project is None


def test_the_working_folder_without_seeknal_is_refused_in_one_line(
    ip: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = failing_cell(ip, "%seeknal run", capsys)
    assert err.strip() == (
        f"UsageError: no seeknal/ folder in {tmp_path}: load a project with "
        "%seeknal project PATH, or write one with %seeknal init --example "
        "fraud-detection DIR"
    )


def test_worker_and_dag_settings_are_validated_by_config(
    ip: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ip.run_line_magic("config", "SeeknalMagics.max_workers = 3")
    with caplog.at_level(logging.ERROR):
        ip.run_line_magic("config", "SeeknalMagics.max_workers = 0")
        ip.run_line_magic("config", "SeeknalMagics.dag_max_nodes = 0")
    assert [record.getMessage() for record in caplog.records] == [
        (
            "SeeknalMagics.max_workers must be 1 or more, got 0 (None means "
            "min(cpu_count, 8))"
        ),
        "SeeknalMagics.dag_max_nodes must be 1 or more, got 0",
    ]
    assert magics(ip).max_workers == 3
    assert magics(ip).dag_max_nodes == 100
    with pytest.raises(TraitError, match="max_workers must be 1 or more, got -2"):
        magics(ip).max_workers = -2
    ip.run_line_magic("config", "SeeknalMagics.max_workers = None")
    assert magics(ip).max_workers is None


def test_progress_auto_is_text_in_a_terminal_shell(ip: Any) -> None:
    assert getattr(ip, "kernel", None) is None
    assert magics(ip).progress == "auto"
    assert isinstance(magics(ip)._reporter(), TextReporter)
    ip.run_line_magic("config", "SeeknalMagics.progress = 'widget'")
    assert isinstance(magics(ip)._reporter(), ProgressPanel)
    ip.run_line_magic("config", "SeeknalMagics.progress = 'text'")
    assert isinstance(magics(ip)._reporter(), TextReporter)


def test_init_into_a_folder_with_a_space_quotes_the_hint(
    ip: Any, tmp_path: Path
) -> None:
    with capture_output() as shown:
        made = seeknal(ip, 'init --example fraud-detection "my fraud"')
    assert made.folder == tmp_path / "my fraud"
    assert shown.stdout == (
        f"Wrote the fraud-detection example to {tmp_path}/my fraud (15 node files). "
        "It is now the notebook's project.\n"
    )
    assert str(made).splitlines()[1] == (
        f"Next: seeknal run --parallel --project '{tmp_path}/my fraud'"
    )
    assert current(ip).root == tmp_path / "my fraud"


def test_init_says_what_happens_to_the_cell_nodes_of_the_previous_project(
    ip: Any, fraud: Path, tmp_path: Path
) -> None:
    seeknal(ip, f"project {fraud}")
    node_cell(ip, "transform spenders --inputs transactions", SPENDERS_SQL)
    with capture_output() as shown:
        seeknal(ip, "init --example fraud-detection fresh")
    assert shown.stdout.strip().endswith(
        f"It is now the notebook's project; 1 cell node left with fraud at {fraud} "
        f"(%seeknal project {fraud} brings them back)."
    )
    node_cell(ip, "transform spenders --inputs transactions", SPENDERS_SQL)
    shutil.rmtree(tmp_path / "fresh")
    with capture_output() as shown:
        seeknal(ip, "init --example fraud-detection fresh")
    assert shown.stdout.strip().endswith(
        "It is now the notebook's project; 1 cell node of the project this "
        "folder held dropped."
    )
    assert current(ip).cells == {}
    with capture_output():
        seeknal(ip, f"project {fraud}")
    assert list(current(ip).cells) == ["transform.spenders"]

"""The DAG pictures of a project: `seeknal dag`, `%seeknal dag` and a plan's page."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.testing.globalipapp import start_ipython

from seeknal_jupyter import cli, environments, graph, render
from seeknal_jupyter.project import Project

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The renderers called, each of them failing as if it had timed out."""
    called: list[str] = []

    def timing_out(name: str) -> Any:
        def render_dot(dot: str) -> str:
            called.append(name)
            raise TimeoutError("stands in for a render that outlasts its time")

        return render_dot

    for name in ("dot", "wasm"):
        monkeypatch.setitem(render._RENDERERS, name, timing_out(name))
    return called


def test_the_text_view_in_a_terminal_renders_no_svg(
    fraud: Path, renders: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["dag", "--project", str(fraud)]) == 0

    printed = capsys.readouterr()
    assert printed.out.splitlines()[:3] == ["fraud", "15 nodes in 4 layers", "layer 1"]
    assert printed.err == ""
    assert renders == []


def test_an_svg_that_timed_out_says_so(
    fraud: Path, renders: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = fraud / "big.svg"

    assert cli.main(["dag", "--project", str(fraud), "--output", str(out)]) == 2

    assert renders == (["dot", "wasm"] if shutil.which("dot") else ["wasm"])
    error = capsys.readouterr().err.splitlines()[-1]
    timed_out = "dot and wasm" if shutil.which("dot") else "dot unavailable"
    assert error.startswith(f"error: {timed_out}")
    assert error.endswith(f"took more than 30 s; {out} was not written")
    assert "no SVG renderer is available" not in error
    assert not out.exists()


def test_a_plan_of_production_is_refused_as_seeknal_plan_refuses_it(
    fraud: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Project(fraud).run()
    refusals = []
    for words in (["plan", "prod"], ["dag", "--plan", "prod"]):
        capsys.readouterr()
        assert cli.main([*words, "--project", str(fraud)]) == 2
        refusals.append(capsys.readouterr().err)

    assert (
        refusals[0]
        == refusals[1]
        == (
            "error: 'prod' is production: plan and apply changes in another "
            "environment, then promote it to production\n"
        )
    )
    shell = shell_instance()
    shell.run_line_magic("load_ext", "seeknal_jupyter")
    try:
        with pytest.raises(UsageError) as refused:
            shell.run_line_magic("seeknal", f"dag --plan production --project {fraud}")
    finally:
        shell.run_line_magic("unload_ext", "seeknal_jupyter")
    assert str(refused.value) == (
        "'production' is production: plan and apply changes in another "
        "environment, then promote it to production"
    )


def shell_instance() -> Any:
    start_ipython()
    return InteractiveShell.instance()


def test_a_plan_is_drawn_from_itself_without_loading_the_project(
    fraud: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = Project(fraud)
    project.run()
    features = fraud / "seeknal/feature_groups/13_feature_group_txn_features.yml"
    features.write_text(
        features.read_text() + "  ip_reputation_score:\n    dtype: float\n"
    )
    plan = environments.plan(project, "dev")
    (fraud / "seeknal/transforms/extra.yml").write_text(
        "kind: transform\nname: extra\ntransform: SELECT 1 AS one\n"
    )

    def no_loading(self: Project) -> None:
        raise AssertionError("the plan's picture loaded the project")

    monkeypatch.setattr(Project, "load", no_loading)
    page = plan._repr_html_()
    drawn = graph.plan_picture(plan, engine="text")

    assert "<svg" in page
    assert "NON_BREAKING" in page and "DEPENDENT" in page
    assert drawn.text.splitlines()[:2] == [
        "fraud: plan for dev",
        "15 nodes in 4 layers",
    ]
    assert (
        "  feature_group.txn_features  <- transform.txn_enriched, "
        "transform.merchant_risk  [NON_BREAKING]"
    ) in drawn.text.splitlines()
    assert drawn.text.count("[UNCHANGED]") == 13
    assert "extra" not in drawn.text
    monkeypatch.undo()
    again = graph.picture(Project(fraud), plan_env="dev", engine="text")
    assert again.text == drawn.text


def test_the_benchmarks_five_thousand_node_project_draws_collapsed_with_wasm(
    tmp_path: Path,
) -> None:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from run import make_large  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(BENCHMARKS))
    make_large(tmp_path / "big", 5000)
    project = Project(tmp_path / "big")
    layers = project.dag().layer_count
    assert layers > render.MAX_BANDS

    picture = graph.picture(project, engine="wasm")

    assert picture.engine == "wasm"
    assert picture.svg is not None
    ranks = set(re.findall(r'subgraph "layer (\d+)"', picture.dot))
    assert len(ranks) <= render.MAX_BANDS
    groups = re.findall(
        r'<g id="node\d+" class="node">\s*<title>__group__', picture.svg
    )
    assert len(groups) == len(re.findall(r"^  \S.* × ", picture.text, re.MULTILINE))
    assert f"{layers} layers in bands of " in picture.text.splitlines()[1]

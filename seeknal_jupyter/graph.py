"""The project's DAG as a picture: node kinds, a run's statuses, or a plan's changes."""

from __future__ import annotations

from collections.abc import Mapping

from seeknal_jupyter.dag import Dag
from seeknal_jupyter.environments import load_plan
from seeknal_jupyter.project import Project
from seeknal_jupyter.render import MAX_NODES, DagPicture, DrawNode, draw
from seeknal_jupyter.report import RunResult


def picture(
    project: Project,
    plan_env: str | None = None,
    result: RunResult | None = None,
    *,
    max_nodes: int = MAX_NODES,
    engine: str = "auto",
) -> DagPicture:
    """Draw the project's DAG, one rank per layer.

    Args:
        project: the project whose current definition is drawn.
        plan_env: colour each node by its change class in this environment's plan.
        result: colour each node by its status in this run, with its seconds and
            the critical path marked (ignored when ``plan_env`` is given).
        max_nodes: above this many nodes the picture collapses by (layer, kind).
        engine: the renderer: "auto", "dot", "wasm" or "text".

    Returns:
        The picture: SVG in Jupyter, text elsewhere.

    Raises:
        ProjectError: the project does not load.
        UsageError: ``plan_env`` has no saved plan.
    """
    dag = project.dag()
    if plan_env is not None:
        nodes = plan_nodes(dag, load_plan(project, plan_env).classes())
        title, mode = f"{project.name}: plan for {plan_env}", "plan"
    elif result is not None:
        nodes = status_nodes(dag, result)
        title, mode = f"{project.name}: {result.headline()}", "status"
    else:
        nodes = kind_nodes(dag)
        title, mode = project.name, "kind"
    return draw(nodes, title=title, mode=mode, max_nodes=max_nodes, engine=engine)


def kind_nodes(dag: Dag) -> list[DrawNode]:
    """One DrawNode per node of ``dag``, in topological order."""
    return [
        DrawNode(
            id=node_id,
            kind=dag.nodes[node_id].kind,
            layer=dag.layer[node_id],
            inputs=tuple(dag.nodes[node_id].inputs),
        )
        for node_id in dag.order
    ]


def status_nodes(dag: Dag, result: RunResult) -> list[DrawNode]:
    """DrawNodes carrying each node's status and seconds in ``result``.

    Nodes the run did not select have no status and draw as "not run".
    """
    critical = set(result.critical_path)
    drawn = []
    for plain in kind_nodes(dag):
        outcome = result.nodes.get(plain.id)
        drawn.append(
            DrawNode(
                id=plain.id,
                kind=plain.kind,
                layer=plain.layer,
                inputs=plain.inputs,
                status=outcome.status if outcome else None,
                seconds=outcome.seconds
                if outcome and outcome.status != "cached"
                else None,
                critical=plain.id in critical,
            )
        )
    return drawn


def plan_nodes(dag: Dag, classes: Mapping[str, str]) -> list[DrawNode]:
    """DrawNodes carrying each node's change class; removed nodes are added.

    A removed node is no longer in ``dag``, so it is drawn in layer 0 with no
    inputs, its kind taken from its id.
    """
    drawn = [
        DrawNode(
            id=plain.id,
            kind=plain.kind,
            layer=plain.layer,
            inputs=plain.inputs,
            change=classes.get(plain.id, "UNCHANGED"),
        )
        for plain in kind_nodes(dag)
    ]
    for node_id, change in classes.items():
        if node_id not in dag.nodes:
            kind = node_id.split(".", 1)[0]
            drawn.append(
                DrawNode(id=node_id, kind=kind, layer=0, inputs=(), change=change)
            )
    return drawn

"""The project's DAG as a picture: node kinds, a run's statuses, or a plan's changes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from seeknal_jupyter.dag import Dag
from seeknal_jupyter.project import Project
from seeknal_jupyter.render import MAX_NODES, DagPicture, DrawNode, draw
from seeknal_jupyter.report import RunResult

if TYPE_CHECKING:
    from seeknal_jupyter.environments import EnvPlan


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
        plan_env: draw this environment's saved plan instead, each node coloured
            by its change class (see :func:`plan_picture`).
        result: colour each node by its status in this run, with its seconds and
            the critical path marked (ignored when ``plan_env`` is given).
        max_nodes: above this many nodes the picture collapses by (layer, kind).
        engine: the renderer: "auto", "dot", "wasm" or "text".

    Returns:
        The picture: SVG in Jupyter, text elsewhere.

    Raises:
        ProjectError: the project does not load.
        UsageError: ``plan_env`` is production (which is never planned) or has
            no saved plan.
    """
    from seeknal_jupyter.environments import environment_name, load_plan

    if plan_env is not None:
        saved = load_plan(project, environment_name(plan_env, project.store))
        return plan_picture(saved, max_nodes=max_nodes, engine=engine)
    dag = project.dag()
    if result is not None:
        nodes = status_nodes(dag, result)
        title, mode = f"{project.name}: {result.headline()}", "status"
    else:
        nodes = kind_nodes(dag)
        title, mode = project.name, "kind"
    return draw(nodes, title=title, mode=mode, max_nodes=max_nodes, engine=engine)


def plan_picture(
    plan: EnvPlan, *, max_nodes: int = MAX_NODES, engine: str = "auto"
) -> DagPicture:
    """Draw a plan's DAG as it was planned, each node coloured by its change class.

    Everything comes from the plan itself (its layers, and the inputs of the
    definitions it recorded), so drawing it loads nothing.

    Args:
        plan: the plan, as :func:`~seeknal_jupyter.environments.plan` made it or
            :func:`~seeknal_jupyter.environments.load_plan` read it.
        max_nodes: above this many nodes the picture collapses by (layer, kind).
        engine: the renderer: "auto", "dot", "wasm" or "text".

    Returns:
        The picture: SVG in Jupyter, text elsewhere.
    """
    return draw(
        plan_nodes(plan),
        title=f"{plan.project}: plan for {plan.env}",
        mode="plan",
        max_nodes=max_nodes,
        engine=engine,
    )


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


def plan_nodes(plan: EnvPlan) -> list[DrawNode]:
    """DrawNodes carrying each node's change class, in the plan's order.

    A removed node is not in the planned DAG, so it is drawn in layer 1 with no
    inputs; every node's kind is taken from its id.
    """
    drawn = []
    for node_id, change in plan.changes.items():
        layer = plan.layers.get(node_id)
        record = plan.records.get(node_id, {}) if layer is not None else {}
        drawn.append(
            DrawNode(
                id=node_id,
                kind=node_id.split(".", 1)[0],
                layer=0 if layer is None else layer - 1,
                inputs=tuple(record.get("inputs", ())),
                change=str(change.change_class),
            )
        )
    return drawn

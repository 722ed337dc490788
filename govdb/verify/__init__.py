"""Verification: routes of checks, tasks assigned by jurisdiction, decisions."""

from govdb.verify.actors import Actor, ResolvedActor, resolve
from govdb.verify.routes import UnitIndex
from govdb.verify.tasks import DecisionResult, TaskView, check_jurisdiction, decide, list_tasks, open_route

__all__ = [
    "Actor",
    "DecisionResult",
    "ResolvedActor",
    "TaskView",
    "UnitIndex",
    "check_jurisdiction",
    "decide",
    "list_tasks",
    "open_route",
    "resolve",
]

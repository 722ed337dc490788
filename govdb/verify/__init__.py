"""Verification: routes of checks, tasks assigned by jurisdiction from master, decisions."""

from govdb.verify.actors import Actor, ResolvedActor, resolve
from govdb.verify.decisions import (
    BatchDecisionReport,
    DecisionInput,
    DecisionResult,
    RefusedDecision,
    decide_many,
)
from govdb.verify.routes import UnitIndex
from govdb.verify.tasks import TaskView, check_jurisdiction, list_tasks

__all__ = [
    "Actor",
    "BatchDecisionReport",
    "DecisionInput",
    "DecisionResult",
    "RefusedDecision",
    "ResolvedActor",
    "TaskView",
    "UnitIndex",
    "check_jurisdiction",
    "decide_many",
    "list_tasks",
    "resolve",
]

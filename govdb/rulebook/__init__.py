"""Rules as data: pydantic models of rules/ files, their loader, and the registry of named blocks."""

from govdb.rulebook.loader import Rulebook, default_rules_dir, load_matching, load_rulebook

__all__ = ["Rulebook", "default_rules_dir", "load_matching", "load_rulebook"]

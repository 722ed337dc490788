"""Load rules/ into a Rulebook: every file validated, every problem reported in one error."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from govdb.errors import RuleFileError, RuleProblem
from govdb.rulebook import registry
from govdb.rulebook.analytics import ANALYTICS_KINDS, AnalyticsRules, CapacityRules, HotwordRules
from govdb.rulebook.models import (
    MASTER_FIELDS,
    NODE_TAGS,
    RULE_KINDS,
    AccessRules,
    AllOf,
    AnyOf,
    BlockRef,
    ColumnRules,
    FormRules,
    MatchingRules,
    Not,
    ProgrammeRules,
    RuleFile,
    SurvivorshipRules,
    VerificationRules,
)


def default_rules_dir() -> Path:
    """GOVDB_RULES, else the rules shipped with govdb (the repository's rules/ folder).

    An installed wheel carries rules/ as the package govdb._rules; a source checkout (or an
    editable install imported from the checkout) reads rules/ beside the package.
    """
    if env := os.environ.get("GOVDB_RULES"):
        return Path(env)
    checkout = Path(__file__).resolve().parents[2] / "rules"
    if checkout.is_dir():
        return checkout
    spec = importlib.util.find_spec("govdb._rules")  # a data-only namespace package in the wheel
    if spec is None or not spec.submodule_search_locations:
        return checkout
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class Rulebook:
    """Every rule govdb runs on, validated."""

    root: Path
    columns: ColumnRules
    verification: VerificationRules
    access: AccessRules
    survivorship: SurvivorshipRules
    forms: dict[str, FormRules] = field(default_factory=dict)
    programmes: dict[str, ProgrammeRules] = field(default_factory=dict)
    matching: dict[str, MatchingRules] = field(default_factory=dict)
    # rules/analytics (optional: a rulebook without them runs everything but analytics)
    analytics: AnalyticsRules | None = None
    capacities: CapacityRules | None = None
    hotwords: HotwordRules | None = None
    # Survivorship of every entity kind (person, enterprise, place); `survivorship` is the person's.
    survivorships: dict[str, SurvivorshipRules] = field(default_factory=dict)

    def survivorship_of(self, entity: str) -> SurvivorshipRules:
        """The survivorship rules of an entity kind; the person's trust nobody but the default."""
        found = self.survivorships.get(entity)
        if found is None:
            return SurvivorshipRules(kind="survivorship", version=1, entity=entity, fields={})  # type: ignore[arg-type]
        return found

    def fingerprint(self, *, governed: bool = False) -> str:
        """sha256 of the validated rules (canonical JSON), so a record names the rules it ran on.

        `governed=True` covers only what decides who may read and who must check (access policies
        and the verification file: departments, routes, services, sources); a change there must
        be applied on purpose (`govdb rules apply`) before the stores accept it. Hashed once per
        rulebook (it is frozen): every decision batch and promotion names it."""
        known: dict[bool, str] = self.__dict__.setdefault("_fingerprints", {})
        if governed not in known:
            known[governed] = self._hash(governed=governed)
        return known[governed]

    def _hash(self, *, governed: bool) -> str:
        parts: dict[str, Any] = {"access": self.access, "verification": self.verification}
        if not governed:
            parts |= {
                "columns": self.columns,
                "survivorship": self.survivorship,
                **{f"survivorship.{k}": v for k, v in sorted(self.survivorships.items()) if k != "person"},
                "forms": self.forms,
                "programmes": self.programmes,
                "matching": self.matching,
            }
            parts |= {k: v for k in ANALYTICS_KINDS if (v := getattr(self, k)) is not None}
        payload = json.dumps(plain_data(parts), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def column_aliases(self) -> dict[str, str]:
        """Header as written -> standard column name (standard names map to themselves)."""
        mapping = {std: std for std in self.columns.aliases}
        for std, names in self.columns.aliases.items():
            mapping.update({name: std for name in names})
        return mapping


def plain_data(value: Any) -> Any:
    """Rule models as JSON-able data, without descriptions (rewording a comment changes nothing)."""
    if isinstance(value, BaseModel):
        value = value.model_dump(
            mode="json", exclude={"description"} if "description" in type(value).model_fields else None
        )
    if isinstance(value, dict):
        return {str(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    return value


def load_rulebook(root: str | Path | None = None) -> Rulebook:
    """Load and check every *.yaml under `root`; raise RuleFileError listing every problem."""
    root = Path(root) if root is not None else default_rules_dir()
    problems: list[RuleProblem] = []
    if not root.is_dir():
        raise RuleFileError(
            [RuleProblem(root, "", "rules folder not found; pass --rules DIR or set GOVDB_RULES")]
        )
    loaded: list[tuple[Path, RuleFile]] = []
    for path in sorted(root.rglob("*.yaml")):
        model = _load_file(path, problems)
        if model is not None:
            loaded.append((path, model))
    book = _assemble(root, loaded, problems)
    if problems or book is None:
        raise RuleFileError(problems)
    return book


def load_matching(path: str | Path) -> MatchingRules:
    """One matching rule file (for `govdb link --rules FILE`), checked like the whole rulebook."""
    path = Path(path)
    problems: list[RuleProblem] = []
    if not path.is_file():
        raise RuleFileError([RuleProblem(path, "", "matching rule file not found")])
    model = _load_file(path, problems)
    if model is not None and not isinstance(model, MatchingRules):
        problems.append(RuleProblem(path, "kind", f"expected kind 'matching', got {model.kind!r}"))
    if problems or model is None:
        raise RuleFileError(problems)
    assert isinstance(model, MatchingRules)
    return model


def _load_file(path: Path, problems: list[RuleProblem]) -> RuleFile | None:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        problems.append(RuleProblem(path, where, f"not valid YAML: {getattr(exc, 'problem', exc)}"))
        return None
    except UnicodeDecodeError:
        problems.append(RuleProblem(path, "", "not UTF-8 text; save the rule file as UTF-8"))
        return None
    except RecursionError:
        problems.append(RuleProblem(path, "", "nested too deeply to be a rule file"))
        return None
    if not isinstance(data, dict):
        problems.append(RuleProblem(path, "", "a rule file is a mapping with `kind` and `version`"))
        return None
    kind = data.get("kind")
    kinds = {**RULE_KINDS, **ANALYTICS_KINDS}
    model_type = kinds.get(kind) if isinstance(kind, str) else None
    if model_type is None:
        problems.append(RuleProblem(path, "kind", f"unknown kind {kind!r}; expected one of {sorted(kinds)}"))
        return None
    try:
        model = model_type.model_validate(data)
        _check_blocks(path, model, problems)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(path, exc))
        return None
    except RecursionError:
        problems.append(RuleProblem(path, "", "conditions nested too deeply; write them flatter"))
        return None
    return model


def _pydantic_problems(path: Path, exc: ValidationError, prefix: str = "") -> Iterable[RuleProblem]:
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"] if part not in NODE_TAGS)
        value = (
            f" (got {err['input']!r})"
            if err["type"] not in ("missing",) and not isinstance(err["input"], dict)
            else ""
        )
        yield RuleProblem(path, f"{prefix}{loc}", f"{err['msg']}{value}")


def _block_refs(model: RuleFile) -> Iterable[tuple[str, registry.BlockKind, BlockRef]]:
    if isinstance(model, ProgrammeRules):
        for i, node in enumerate(model.eligibility):
            yield from _condition_refs(f"eligibility.{i}", node)
        for i, node in enumerate(model.delivery.home_if):
            yield from _condition_refs(f"delivery.home_if.{i}", node)
    elif isinstance(model, VerificationRules):
        for name, route in model.routes.items():
            for i, step in enumerate(route.steps):
                for j, ref in enumerate(step.auto_pass):
                    yield f"routes.{name}.steps.{i}.auto_pass.{j}", "auto_pass", ref
    elif isinstance(model, AccessRules):
        for dept, policy in model.departments.items():
            for fld, ref in policy.masked.items():
                yield f"departments.{dept}.masked.{fld}", "mask", ref


def _condition_refs(where: str, node: Any) -> Iterable[tuple[str, registry.BlockKind, BlockRef]]:
    """The blocks of an eligibility condition, with their dotted paths in the file."""
    if isinstance(node, BlockRef):
        yield where, "eligibility", node
    elif isinstance(node, AllOf | AnyOf):
        key = "all" if isinstance(node, AllOf) else "any"
        for i, child in enumerate(getattr(node, key)):
            yield from _condition_refs(f"{where}.{key}.{i}", child)
    elif isinstance(node, Not):
        yield from _condition_refs(f"{where}.not", node.negated)


def _check_blocks(path: Path, model: RuleFile, problems: list[RuleProblem]) -> None:
    for where, kind, ref in _block_refs(model):
        block = registry.get(kind, ref.block)
        if block is None:
            known = ", ".join(b.name for b in registry.blocks(kind))
            problems.append(
                RuleProblem(path, f"{where}.block", f"no {kind} block named {ref.block!r}; known: {known}")
            )
            continue
        try:
            block.params.model_validate(ref.params)
        except ValidationError as exc:
            problems.extend(_pydantic_problems(path, exc, prefix=f"{where}.params."))


def _assemble(
    root: Path, loaded: list[tuple[Path, RuleFile]], problems: list[RuleProblem]
) -> Rulebook | None:
    singles: dict[type[BaseModel], tuple[Path, RuleFile]] = {}
    forms: dict[str, FormRules] = {}
    programmes: dict[str, ProgrammeRules] = {}
    matching: dict[str, MatchingRules] = {}
    survivorships: dict[str, tuple[Path, SurvivorshipRules]] = {}
    for path, model in loaded:
        if isinstance(model, SurvivorshipRules):
            if model.entity in survivorships:
                first = survivorships[model.entity][0]
                problems.append(
                    RuleProblem(
                        path, "entity", f"survivorship of {model.entity!r} is defined twice; see {first}"
                    )
                )
            survivorships[model.entity] = (path, model)
            if model.entity != "person":
                continue
        if isinstance(model, FormRules):
            if model.code in forms:
                problems.append(RuleProblem(path, "code", f"form code {model.code!r} is defined twice"))
            forms[model.code] = model
        elif isinstance(model, ProgrammeRules):
            if model.name in programmes:
                problems.append(RuleProblem(path, "name", f"programme {model.name!r} is defined twice"))
            programmes[model.name] = model
        elif isinstance(model, MatchingRules):
            if model.entity in matching:
                problems.append(
                    RuleProblem(path, "entity", f"matching for {model.entity!r} is defined twice")
                )
            matching[model.entity] = model
        elif type(model) in singles:
            problems.append(
                RuleProblem(
                    path, "kind", f"a second {model.kind!r} file; the first is {singles[type(model)][0]}"
                )
            )
        else:
            singles[type(model)] = (path, model)
    if "person" not in matching:
        problems.append(RuleProblem(root, "", "no rule file of kind 'matching' for entity 'person'"))
    for needed in (ColumnRules, VerificationRules, AccessRules, SurvivorshipRules):
        if needed not in singles:
            kind = needed.model_fields["kind"].annotation.__args__[0]  # type: ignore[union-attr]
            problems.append(RuleProblem(root, "", f"no rule file of kind {kind!r}"))
    if problems:
        return None
    verification = singles[VerificationRules][1]
    access = singles[AccessRules][1]
    assert isinstance(verification, VerificationRules) and isinstance(access, AccessRules)
    _cross_check(singles, forms, programmes, problems, {id(model): path for path, model in loaded})
    if problems:
        return None
    return Rulebook(
        root=root,
        columns=singles[ColumnRules][1],  # type: ignore[arg-type]
        verification=verification,
        access=access,
        survivorship=singles[SurvivorshipRules][1],  # type: ignore[arg-type]
        forms=forms,
        programmes=programmes,
        matching=matching,
        **{k: singles[t][1] for k, t in ANALYTICS_KINDS.items() if t in singles},  # type: ignore[arg-type]
        survivorships={k: v for k, (_, v) in survivorships.items()},
    )


def _cross_check(
    singles: dict[type[BaseModel], tuple[Path, Any]],
    forms: dict[str, FormRules],
    programmes: dict[str, ProgrammeRules],
    problems: list[RuleProblem],
    paths: dict[int, Path],
) -> None:
    """References between files: departments, routes and master fields must exist."""
    vpath, verification = singles[VerificationRules]
    apath, access = singles[AccessRules]
    departments = set(verification.departments)
    for name, route in verification.routes.items():
        for i, step in enumerate(route.steps):
            if step.department and step.department not in departments:
                problems.append(
                    RuleProblem(
                        vpath,
                        f"routes.{name}.steps.{i}.department",
                        f"unknown department {step.department!r}; define it under departments",
                    )
                )
    for code, service in verification.services.items():
        for attr in ("route", "update_route"):
            route = getattr(service, attr)
            if route and route not in verification.routes:
                problems.append(RuleProblem(vpath, f"services.{code}.{attr}", f"unknown route {route!r}"))
    for name, source in verification.sources.items():
        if source.department not in departments:
            problems.append(
                RuleProblem(
                    vpath,
                    f"sources.{name}.department",
                    f"unknown department {source.department!r}; define it under departments",
                )
            )
        for i, route_name in enumerate(source.auto_pass):
            route = verification.routes.get(route_name)
            if route is None:
                problems.append(
                    RuleProblem(vpath, f"sources.{name}.auto_pass.{i}", f"unknown route {route_name!r}")
                )
            elif not any(s.department == source.department for s in route.steps):
                problems.append(
                    RuleProblem(
                        vpath,
                        f"sources.{name}.auto_pass.{i}",
                        f"route {route_name!r} has no {source.department} step for this source to pass",
                    )
                )
    for dept in access.departments:
        if dept not in departments:
            problems.append(RuleProblem(apath, f"departments.{dept}", f"unknown department {dept!r}"))
    for dept, policy in access.departments.items():
        for i, fld in enumerate(policy.fields):
            if not _access_field(fld):
                problems.append(
                    RuleProblem(apath, f"departments.{dept}.fields.{i}", f"unknown master field {fld!r}")
                )
        for fld in policy.masked:
            if not _access_field(fld):
                problems.append(
                    RuleProblem(apath, f"departments.{dept}.masked.{fld}", f"unknown master field {fld!r}")
                )
    for source_field, derived in access.derived.items():
        for i, fld in enumerate([source_field, *derived]):
            if not _access_field(fld):
                where = f"derived.{source_field}" + (f".{i - 1}" if i else "")
                problems.append(RuleProblem(apath, where, f"unknown master field {fld!r}"))
    for form in forms.values():
        path = paths[id(form)]
        if form.department not in access.departments:
            problems.append(
                RuleProblem(path, "department", f"department {form.department!r} has no access policy")
            )
        names = {f.name for f in form.fields}
        for i, fld in enumerate(form.fields):
            if fld.source and not _valid_source(fld.source):
                problems.append(
                    RuleProblem(
                        path,
                        f"fields.{i}.source",
                        f"unknown source {fld.source!r}; use person.<field>, credential.<kind>.<field> "
                        "or enterprise.<field>",
                    )
                )
        for i, doc in enumerate(form.documents):
            for j, fld_name in enumerate(doc.satisfied_by):
                if fld_name not in names:
                    problems.append(
                        RuleProblem(path, f"documents.{i}.satisfied_by.{j}", f"no form field {fld_name!r}")
                    )
    for programme in programmes.values():
        if programme.department not in departments:
            problems.append(
                RuleProblem(
                    paths[id(programme)], "department", f"unknown department {programme.department!r}"
                )
            )


def _access_field(name: str) -> bool:
    """A field access rules may name: a person field, credential.<kind>[.<field>], or
    enterprise.<field>."""
    if name.startswith("enterprise."):
        return name.split(".", 1)[1] in MASTER_FIELDS["enterprise"]
    return name in MASTER_FIELDS["person"] or name.startswith("credential.")


def _valid_source(source: str) -> bool:
    parts = source.split(".")
    if parts[0] == "enterprise":
        return len(parts) == 2 and parts[1] in MASTER_FIELDS["enterprise"]
    if parts[0] == "person":
        return len(parts) == 2 and parts[1] in MASTER_FIELDS["person"]
    if parts[0] == "credential":
        return (len(parts) == 3 and parts[2] in ("number", "valid_from", "valid_to", "issuer")) or (
            len(parts) == 4 and parts[2] == "attributes"
        )
    return False

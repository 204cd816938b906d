"""A stage's inputs, declared once: what its content address is derived from, and how it runs.

Contract: every stage module declares one frozen dataclass subclassing :class:`StageInputs`,
with a field per input. From those fields alone:

* **upstream**: every :class:`~tasks.core.manifest.Manifest` found in a field's value (directly,
  in a tuple/list/dict, or in a pydantic model such as the report's contenders) is an upstream,
  its *role* the path to it (``evaluation``, ``grid[1]``, ``contenders[2].wide``); in field order;
* **key config**: every other value, dumped to JSON (a manifest's place holds ``@<role>``), minus
  the fields a config model marks ``json_schema_extra={"keyed": False}`` (:data:`UNKEYED`).

:meth:`StageInputs.plan` turns both, with the code fingerprint of the stage's module, into a
:class:`~tasks.core.manifest.StagePlan`; :meth:`StageInputs.run` computes the stage into it. The
Prefect layer has one cached task that calls ``run`` for any stage (``tasks.stages.stage_task``).

The rule for what a key holds: what can change the files a stage publishes. Settings that
choose only how fast or where the same results are computed (the judge's worker count and
sandbox backend, the task runner) are marked unkeyed; the judge's agreement across backends is
a tested claim of the sandbox (``tests/sandbox``), which is what makes ``backend`` unkeyed.
Settings that change a stage's directory layout (shard sizes) stay keyed.

Config classes are imported by stage modules under ``TYPE_CHECKING`` only (annotations are
strings; dataclasses do not validate at run time), so a config class's source is no part of
any fingerprint: its values are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from tasks.core.manifest import Manifest, StagePlan, plan_stage

UNKEYED = "keyed"  # json_schema_extra={"keyed": False} keeps a config field out of every key
Advance = Callable[[int], None]  # reports units done (steps, rounds) to a progress bar


def _keyed(field: Any) -> bool:
    extra = field.json_schema_extra
    return not (isinstance(extra, dict) and extra.get(UNKEYED) is False)


def manifests_in(value: Any, role: str) -> Iterator[tuple[str, Manifest]]:
    """``(role, manifest)`` for every manifest inside ``value``, depth first, in order."""
    if isinstance(value, Manifest):
        yield role, value
    elif isinstance(value, tuple | list):
        for i, item in enumerate(value):
            yield from manifests_in(item, f"{role}[{i}]")
    elif isinstance(value, dict):
        for k, item in value.items():
            yield from manifests_in(item, f"{role}[{k}]")
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from manifests_in(getattr(value, name), f"{role}.{name}")


def map_manifests(value: Any, move: Callable[[Manifest], Manifest]) -> Any:
    """``value`` with every manifest inside it (as :func:`manifests_in` finds them) replaced by
    ``move(manifest)``; a value without manifests is returned as it is."""
    if isinstance(value, Manifest):
        return move(value)
    if not any(True for _ in manifests_in(value, "")):
        return value
    if isinstance(value, tuple | list):
        return type(value)(map_manifests(item, move) for item in value)
    if isinstance(value, dict):
        return {k: map_manifests(item, move) for k, item in value.items()}
    names = type(value).model_fields
    return value.model_copy(update={n: map_manifests(getattr(value, n), move) for n in names})


def key_dump(value: Any, role: str) -> Any:
    """``value`` as JSON for a key: manifests as ``@role``, unkeyed config fields dropped."""
    if isinstance(value, Manifest):
        return f"@{role}"
    if isinstance(value, tuple | list):
        return [key_dump(item, f"{role}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): key_dump(item, f"{role}[{k}]") for k, item in value.items()}
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        return {n: key_dump(getattr(value, n), f"{role}.{n}") for n, f in fields.items() if _keyed(f)}
    return to_jsonable_python(value)


@dataclasses.dataclass(frozen=True)
class StageInputs:
    """Base of every stage's declared inputs (a frozen dataclass per stage module).

    Subclasses set ``STAGE`` (a :class:`~tasks.core.stages.Stage`) and implement :meth:`run`;
    :meth:`progress` sizes the stage's progress bar."""

    STAGE: ClassVar[str]

    def _values(self) -> Iterator[tuple[str, Any]]:
        for f in dataclasses.fields(self):
            yield f.name, getattr(self, f.name)

    def upstream(self) -> list[tuple[str, Manifest]]:
        return [pair for name, value in self._values() for pair in manifests_in(value, name)]

    def moved(self, move: Callable[[Manifest], Manifest]) -> StageInputs:
        """These inputs with every upstream manifest replaced by ``move(manifest)`` (e.g. the
        same stage in another node's mirror): the same key, other directories."""
        return dataclasses.replace(self, **{n: map_manifests(v, move) for n, v in self._values()})

    def key_config(self) -> dict[str, Any]:
        return {name: key_dump(value, name) for name, value in self._values()}

    def plan(self, root: str | Path) -> StagePlan:
        """Where this stage publishes: its key from config, upstream roles and the code
        fingerprint of the module that declares these inputs."""
        return plan_stage(root, self.STAGE, self.key_config(), self.upstream(), type(self).__module__)

    def progress(self) -> tuple[int, str]:
        """(units of work, what they are) for the stage's progress bar; (0, "") for none."""
        return 0, ""

    def run(self, plan: StagePlan, progress: Advance | None = None) -> Manifest:
        raise NotImplementedError(f"{type(self).__name__} must implement run(plan, progress)")

"""The :class:`Family` record: one kind of tiny stdin/stdout problem, fully described.

A family owns: phrasings of its task (>= 3, for every split) and phrasings reserved for
evaluation (``reserved_phrasings``, >= 1 once the catalogue has filled them in), an Output text, constraints, a case generator, a
trusted *plain Python* answer function (expected outputs are computed by calling it, never by
running the reference program), the body of its reference solution and of a deliberately wrong
one. Bodies and texts may hold ``{k}``, replaced by the instance's parameter (``k`` is ``None``
for unparameterised families). Edge cases (a function of ``k``) always open the private tests;
each wrong body is chosen to fail an edge case or almost every input.

Limits: agreement between ``solve`` and ``body`` is not checked here; the sandbox test
``tests/problems/test_families_sandbox.py`` runs every reference and wrong program.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .shapes import Shape, Variant, program


def fill(template: str, k: Any) -> str:
    """Replace ``{k}`` (no other braces are touched, so code may hold ``{}`` safely)."""
    return template if k is None else template.replace("{k}", str(k))


@dataclass(frozen=True)
class Family:
    name: str
    shape: Shape
    gen: Callable[[random.Random, Any], Any]
    solve: Callable[[Any, Any], str]
    body: tuple[str, ...]
    wrong: tuple[str, ...]
    phrasings: tuple[str, ...]
    output: str
    constraints: str
    tags: tuple[str, ...] = ("implementation",)
    rating: int = 800
    param: Callable[[random.Random], Any] | None = None
    edge: Callable[[Any], tuple[Any, ...]] = lambda k: ()
    imports: tuple[str, ...] = ()
    reserved_phrasings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.phrasings) < 3:
            raise ValueError(f"family {self.name!r} needs >= 3 phrasings, has {len(self.phrasings)}")
        if set(self.phrasings) & set(self.reserved_phrasings):
            raise ValueError(f"family {self.name!r}: a reserved phrasing is also a training phrasing")

    @property
    def variants(self) -> tuple[Variant, ...]:
        """The shape's training input variants (every split may use them)."""
        return self.shape.variants

    @property
    def reserved_variants(self) -> tuple[Variant, ...]:
        """The shape's input variants reserved for evaluation splits."""
        return self.shape.reserved

    @property
    def all_phrasings(self) -> tuple[str, ...]:
        """Training phrasings, then reserved ones: phrasing ``i`` of a problem indexes this."""
        return self.phrasings + self.reserved_phrasings

    def reference(self, variant: Variant, k: Any) -> str:
        return program(variant, tuple(fill(x, k) for x in self.body), self.imports)

    def incorrect(self, variant: Variant, k: Any) -> str:
        return program(variant, tuple(fill(x, k) for x in self.wrong), self.imports)

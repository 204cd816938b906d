"""The bundled splits: which families and which templates each one may draw, and what it measures.

A *template* of a family is one (input variant, phrasing) pair: it fixes the statement text up
to the constants and examples, and the reference program up to ``k``. Splits of the seen
families (all but ``HELD_OUT_FAMILIES``) draw from disjoint template pools:

* ``train`` (SFT), ``rl`` (RL training), ``test_instances``: the *training* templates, i.e.
  every (training variant, training phrasing) pair except the family's valid template.
  ``test_instances`` therefore measures in-distribution skill: seen templates, new constants.
* ``valid`` (every selection: temperatures, RL settings, checkpoints): one template per family,
  a training variant with a training phrasing, never drawn by ``train``/``rl``/tests
  (a new combination of a seen variant and a seen phrasing).
* ``test_templates``: the family's *reserved* variants crossed with its *reserved* phrasings
  (:mod:`.families.reserved`, ``Shape.reserved``): statements and parsing code never seen.
* ``test_families``: only the held-out families, every template (training and reserved).

Contract: :func:`template_pool` is a pure function of (family, split); a split's instance
``i`` of a family takes template ``pool[(offset + i) % len(pool)]`` with a per-(split, family)
offset, so capped splits still spread over templates. ``tests/problems/test_splits.py`` proves
the disjointness claims above on the default profile.
Limits: disjointness is by construction of these pools; constants (``k``) and test data are
drawn per split from independent random streams, so two splits may still share a ``k``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal

from .families import Family, Variant


@dataclass(frozen=True)
class SplitSpec:
    """What a bundled split is for and which templates it draws (see the module docstring)."""

    name: str
    role: Literal["sft", "rl", "selection", "test"]
    families: Literal["seen", "held-out"]
    pool: Literal["training", "valid", "reserved", "all"]
    label: str  # what a score on it measures, as reports should print it
    shares_templates_with_training: bool


SPLITS: dict[str, SplitSpec] = {
    s.name: s
    for s in (
        SplitSpec("train", "sft", "seen", "training", "training (SFT)", True),
        SplitSpec("rl", "rl", "seen", "training", "training (RL)", True),
        SplitSpec("valid", "selection", "seen", "valid", "selection (new variant x phrasing pairs)", False),
        SplitSpec("test_instances", "test", "seen", "training", "in-distribution (seen templates)", True),
        SplitSpec(
            "test_templates", "test", "seen", "reserved", "new templates (reserved phrasing+input)", False
        ),
        SplitSpec("test_families", "test", "held-out", "all", "new families (held out)", False),
    )
}


@dataclass(frozen=True)
class Template:
    """One (input variant, phrasing index) of a family; the index is into ``Family.all_phrasings``."""

    variant: Variant
    phrasing: int


def _crc(text: str) -> int:
    return zlib.crc32(text.encode())


def _grid(family: Family, variants: tuple[Variant, ...], phrasings: range) -> list[Template]:
    return [Template(v, p) for p in phrasings for v in variants]


def valid_template(family: Family) -> Template:
    """The family's one template reserved for ``valid`` (fixed by a hash of its name)."""
    grid = _grid(family, family.variants, range(len(family.phrasings)))
    return grid[_crc(family.name) % len(grid)]


def template_pool(family: Family, split: str) -> tuple[Template, ...]:
    """The templates ``split`` may draw for ``family`` (empty when the split excludes it)."""
    spec = SPLITS[split]
    n_train, n_all = len(family.phrasings), len(family.all_phrasings)
    if spec.pool == "valid":
        return (valid_template(family),)
    if spec.pool == "training":
        chosen = valid_template(family)
        return tuple(t for t in _grid(family, family.variants, range(n_train)) if t != chosen)
    if spec.pool == "reserved":
        return tuple(_grid(family, family.reserved_variants, range(n_train, n_all)))
    return tuple(_grid(family, family.variants + family.reserved_variants, range(n_all)))


def instance_template(family: Family, split: str, index: int) -> Template:
    """Template of instance ``index`` of ``family`` in ``split`` (cycles through the pool)."""
    pool = template_pool(family, split)
    if not pool:
        raise ValueError(f"split {split!r} has no template for family {family.name!r}")
    return pool[(_crc(f"{split}|{family.name}") + index) % len(pool)]

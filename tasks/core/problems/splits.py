"""The bundled splits: which families and which templates each one may draw, and what it measures.

A *template* of a family is one (input variant, phrasing) pair: it fixes the statement text up
to the constants and examples, and the reference program up to ``k``. A *cell* is a (family,
input variant) pair. Every seen family (all but ``HELD_OUT_FAMILIES``) gives one of its
training variants to RL only (:func:`rl_variant`, its *RL cell*); the splits of the seen
families draw from disjoint template pools:

* ``train`` (SFT) and ``test_instances``: the *SFT* templates, i.e. every (SFT variant, training
  phrasing) pair except the family's valid template, where the SFT variants are the family's
  training variants minus its RL cell's. ``test_instances`` therefore measures in-distribution
  skill: seen templates, new constants.
* ``valid`` (every selection: temperatures, RL settings, checkpoints): one template per family,
  an SFT variant with a training phrasing, never drawn by ``train``/tests (a new combination of
  a seen variant and a seen phrasing: every shape has three training variants, so a family keeps
  two SFT variants and ``train`` shows the valid template's phrasing with the other one).
* ``rl`` (RL training), ``valid_rl`` (RL selection: one problem per family) and
  ``test_rl_cells`` (held-out instances of the RL cells: new constants and tests): the RL cell
  crossed with every training phrasing. **Their problems carry no reference solution** (nor a
  wrong one): RL learns them from their tests only, as RL on problems with tests but no
  solutions must.
* ``rl_oracle``: the very problems of ``rl`` (same names, constants and tests) *with* their
  reference solutions, for the oracle-SFT baseline only. No default role (``sft_split``,
  ``rl_split``, ``valid_split``) names it; it is the one way to reach an RL cell's program.
* ``test_templates``: the family's *reserved* variants crossed with its *reserved* phrasings
  (:mod:`.families.reserved`, ``Shape.reserved``): statements and parsing code never seen.
* ``test_families``: only the held-out families, every template (training and reserved).

RL cells form a Latin square within each input shape: the shape's seen families, in catalogue
order, reserve its training variants in turn, so each variant is an RL cell of about
1/len(variants) of the families and every variant's reading code is still seen in ``train``
through the other families.

Contract: :func:`template_pool` is a pure function of (family, split); a split's instance
``i`` of a family takes template ``pool[(offset + i) % len(pool)]`` with a per-(split, family)
offset, so capped splits still spread over templates. ``SplitSpec.per_family`` caps a split's
instances per family whatever the caller asks (``valid_rl``: 1). ``tests/problems/test_splits.py``
proves the disjointness claims above on the default profile.
Limits: disjointness is by construction of these pools; constants (``k``) and test data are
drawn per split from independent random streams, so two splits may still share a ``k`` (and an
unparameterised family's RL-cell program is the same in ``rl`` and ``test_rl_cells``: what is
held out there is the instance, not the program, which neither split shows).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal

from .families import FAMILIES, HELD_OUT_FAMILIES, Family, Variant


@dataclass(frozen=True)
class SplitSpec:
    """What a bundled split is for and which templates it draws (see the module docstring)."""

    name: str
    role: Literal["sft", "rl", "selection", "test", "oracle"]
    families: Literal["seen", "held-out"]
    pool: Literal["training", "valid", "rl_cell", "reserved", "all"]
    label: str  # what a score on it measures, as reports should print it
    shares_templates_with_training: bool
    solutions: bool = True  # False: the loader strips reference (and wrong) programs
    per_family: int | None = None  # at most this many instances per family, whatever is asked
    stream: str | None = None  # draw the instances (names, constants, tests) of this split instead


SPLITS: dict[str, SplitSpec] = {
    s.name: s
    for s in (
        SplitSpec("train", "sft", "seen", "training", "training (SFT)", True),
        SplitSpec("rl", "rl", "seen", "rl_cell", "training (RL, no solutions)", False, solutions=False),
        SplitSpec("valid", "selection", "seen", "valid", "selection (new variant x phrasing pairs)", False),
        SplitSpec(
            "valid_rl",
            "selection",
            "seen",
            "rl_cell",
            "RL selection (RL cells, no solutions)",
            False,
            solutions=False,
            per_family=1,
        ),
        SplitSpec("test_instances", "test", "seen", "training", "in-distribution (seen templates)", True),
        SplitSpec(
            "test_rl_cells",
            "test",
            "seen",
            "rl_cell",
            "RL cells (tests, no solutions in training)",
            False,
            solutions=False,
        ),
        SplitSpec(
            "test_templates", "test", "seen", "reserved", "new templates (reserved phrasing+input)", False
        ),
        SplitSpec("test_families", "test", "held-out", "all", "new families (held out)", False),
        SplitSpec(
            "rl_oracle",
            "oracle",
            "seen",
            "rl_cell",
            "the rl problems with their solutions",
            False,
            stream="rl",
        ),
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


def rl_variant(family: Family) -> Variant | None:
    """The training variant of ``family``'s RL cell (None for a held-out family): the shape's
    seen families, in catalogue order, take the shape's training variants in turn."""
    if family.name in HELD_OUT_FAMILIES:
        return None
    peers = [
        f.name for f in FAMILIES if f.shape.name == family.shape.name and f.name not in HELD_OUT_FAMILIES
    ]
    if family.name not in peers:
        raise ValueError(f"family {family.name!r} is not in the catalogue; RL cells are assigned there")
    return family.variants[peers.index(family.name) % len(family.variants)]


def sft_variants(family: Family) -> tuple[Variant, ...]:
    """The training variants SFT may see for ``family``: all but its RL cell's."""
    return tuple(v for v in family.variants if v != rl_variant(family))


def valid_template(family: Family) -> Template:
    """The family's one template reserved for ``valid`` (fixed by a hash of its name)."""
    grid = _grid(family, sft_variants(family), range(len(family.phrasings)))
    return grid[_crc(family.name) % len(grid)]


def template_pool(family: Family, split: str) -> tuple[Template, ...]:
    """The templates ``split`` may draw for ``family`` (empty when the split excludes it)."""
    spec = SPLITS[split]
    n_train, n_all = len(family.phrasings), len(family.all_phrasings)
    if spec.pool == "valid":
        return (valid_template(family),)
    if spec.pool == "training":
        chosen = valid_template(family)
        return tuple(t for t in _grid(family, sft_variants(family), range(n_train)) if t != chosen)
    if spec.pool == "rl_cell":
        cell = rl_variant(family)
        return () if cell is None else tuple(_grid(family, (cell,), range(n_train)))
    if spec.pool == "reserved":
        return tuple(_grid(family, family.reserved_variants, range(n_train, n_all)))
    return tuple(_grid(family, family.variants + family.reserved_variants, range(n_all)))


def instance_template(family: Family, split: str, index: int) -> Template:
    """Template of instance ``index`` of ``family`` in ``split`` (cycles through the pool)."""
    pool = template_pool(family, split)
    if not pool:
        raise ValueError(f"split {split!r} has no template for family {family.name!r}")
    return pool[(_crc(f"{split}|{family.name}") + index) % len(pool)]

"""Bundled procedural problems: thousands of tiny stdin/stdout tasks a small model can learn.

``bundled_problems(split, seed=0, per_family=50)`` yields, for each family of the split,
``per_family`` :class:`Problem` instances, interleaved across families (instance 0 of every
family, then instance 1, ...). Splits (:data:`.splits.SPLITS` says what each is for and
measures; :mod:`.splits` which templates each may draw):

* ``train`` (SFT), ``rl`` (RL training), ``valid`` (selection), ``valid_rl`` (RL selection),
  ``test_instances`` (in-distribution), ``test_rl_cells`` (the RL cells), ``test_templates``
  (reserved phrasings and input variants) and ``rl_oracle`` (``rl`` with its solutions): the
  families not in ``HELD_OUT_FAMILIES``;
* ``test_families``: only the held-out families (about 17% of the catalogue), never seen in
  train, rl or valid.

Each split draws its instances from its own random stream, so names never collide across
splits (a name is ``fam-<family>/<variant>/p<phrasing>/<split>-<seed>-<index>``). Each
instance fixes a family, a template (input variant, phrasing; cycled through the split's pool)
and, for parameterised families, a parameter ``k``. Tests: 1-2 public (shown in the statement
as the Codeforces "Example"), ``N_PRIVATE`` private (the family's edge cases first) and
``N_GENERATED`` generated. Expected outputs come from each family's trusted plain-Python
``solve`` function; no program text is executed here. The reference program (``solutions``)
and a deliberately wrong one (``incorrect_solutions``) are Python 3 text, checked in the
sandbox by the test suite. Splits of the RL cells (``rl``, ``valid_rl``, ``test_rl_cells``;
``SplitSpec.solutions`` False) come with both stripped: only ``rl_oracle`` holds an RL cell's
programs, and it yields the very problems of ``rl`` (same names; ``tags["split"]`` says
``rl_oracle``). ``valid_rl`` holds at most one instance per family (``SplitSpec.per_family``).

Limits: deterministic for a given (split, seed, per_family) on a given Python version (string
seeding of ``random.Random``). Instances of one family share one reference program per
(variant, k), so ``test_instances`` (same templates as training) measures in-distribution
skill and two instances may even show the same statement; ``test_templates`` new statements
and parsing code of seen families; ``test_families`` generalisation to new families.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from .families import FAMILIES, HELD_OUT_FAMILIES, Family, Variant, fill
from .schema import Duration, Language, Problem, Solutions, Source, Tests
from .splits import SPLITS, instance_template

BUNDLED_SPLITS: tuple[str, ...] = tuple(SPLITS)
N_PRIVATE = 8
N_GENERATED = 10
MAX_MULTI_CASES = 5
TIME_LIMIT = Duration(seconds=1)
MEMORY_LIMIT_BYTES = 256 * 1024 * 1024
# CodeContests difficulty enum: A=7, B=8 (Codeforces problem index letters).
_DIFFICULTY_BY_RATING = {800: 7, 900: 8, 1000: 9}

_BY_NAME: dict[str, Family] = {f.name: f for f in FAMILIES}


def list_families(split: str | None = None) -> tuple[str, ...]:
    """Family names, sorted: all of them, or those that a split draws from."""
    names = sorted(_BY_NAME)
    if split is None:
        return tuple(names)
    _check_split(split)
    held = SPLITS[split].families == "held-out"
    return tuple(n for n in names if (n in HELD_OUT_FAMILIES) == held)


def get_family(name: str) -> Family:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown family {name!r}; see list_families()") from None


def bundled_problems(split: str, *, seed: int = 0, per_family: int = 50) -> Iterator[Problem]:
    """Yield ``per_family`` instances of every family of ``split`` (deterministic)."""
    _check_split(split)
    if not isinstance(per_family, int) or per_family < 1:
        raise ValueError(f"per_family must be a positive integer, got {per_family!r}")
    if not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    families = [get_family(n) for n in list_families(split)]
    cap = SPLITS[split].per_family
    for index in range(min(per_family, cap) if cap else per_family):
        for family in families:
            yield make_instance(family, split, seed, index)


def _check_split(split: str) -> None:
    if split not in BUNDLED_SPLITS:
        raise ValueError(f"unknown bundled split {split!r}; valid splits: {', '.join(BUNDLED_SPLITS)}")


def make_instance(family: Family, split: str, seed: int, index: int) -> Problem:
    """Instance ``index`` of ``family`` in ``split``; drawn from ``SplitSpec.stream``'s random
    stream when set (``rl_oracle`` = ``rl``), without programs when ``SplitSpec.solutions`` is False."""
    spec = SPLITS[split]
    stream = spec.stream or split
    rng = random.Random(f"{seed}|{stream}|{family.name}|{index}")
    template = instance_template(family, stream, index)
    variant, phrasing = template.variant, template.phrasing
    k = family.param(rng) if family.param else None
    public = _tests(family, variant, k, rng, 1 + (rng.random() < 0.5), ())
    private = _tests(family, variant, k, rng, N_PRIVATE, family.edge(k))
    generated = _tests(family, variant, k, rng, N_GENERATED, ())
    return Problem(
        name=f"fam-{family.name}/{variant.name}/p{phrasing}/{stream}-{seed}-{index:04d}",
        description=_statement(family, variant, phrasing, k, public),
        public_tests=public,
        private_tests=private,
        generated_tests=generated,
        source=Source.UNKNOWN_SOURCE,
        difficulty=_DIFFICULTY_BY_RATING.get(family.rating, 0),
        solutions=_programs(spec.solutions, family.reference(variant, k)),
        incorrect_solutions=_programs(spec.solutions, family.incorrect(variant, k)),
        cf_rating=family.rating,
        cf_tags=family.tags,
        time_limit=TIME_LIMIT,
        memory_limit_bytes=MEMORY_LIMIT_BYTES,
        tags={
            "family": family.name,
            "variant": variant.name,
            "phrasing": str(phrasing),
            "split": split,
            "k": "" if k is None else str(k),
        },
    )


def _programs(keep: bool, program: str) -> Solutions:
    return Solutions(language=(Language.PYTHON3,), solution=(program,)) if keep else Solutions()


def _tests(
    family: Family, variant: Variant, k: Any, rng: random.Random, count: int, edges: tuple[Any, ...]
) -> Tests:
    inputs, outputs = [], []
    for i in range(count):
        cases = [edges[i]] if i < len(edges) else [family.gen(rng, k)]
        if variant.multi:
            cases += [family.gen(rng, k) for _ in range(rng.randint(1, MAX_MULTI_CASES) - 1)]
            text = variant.sep.join(variant.render(c) for c in cases)
            text = text if variant.eof else f"{len(cases)}\n{text}"
        else:
            text = variant.render(cases[0])
        inputs.append(text + "\n")
        outputs.append("\n".join(family.solve(c, k) for c in cases) + "\n")
    return Tests(input=tuple(inputs), output=tuple(outputs))


def _statement(family: Family, variant: Variant, phrasing: int, k: Any, public: Tests) -> str:
    output = fill(family.output, k)
    if variant.multi:
        output = f"For each test case, {output[0].lower()}{output[1:-1]} on its own line."
    parts = [
        fill(family.all_phrasings[phrasing], k),
        "Input\n" + variant.input_text.replace("{c}", fill(family.constraints, k)),
        "Output\n" + output,
    ]
    for inp, out in public.pairs():
        parts.append(f"Example\nInput\n{inp.rstrip()}\nOutput\n{out.rstrip()}")
    return "\n\n".join(parts) + "\n"

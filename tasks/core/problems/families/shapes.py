"""Input shapes of the bundled families and their input-format variants.

A *shape* fixes what one test case holds (an integer ``n``; a pair ``a, b``; a triple
``a, b, c``; a list ``a``; a string ``s``). A *variant* fixes how it is laid out on stdin and
gives the matching, formulaic Python 3 reading code, so that every family of one shape reads
its input with exactly the same lines. Multi-case variants (``t`` cases, one per line) wrap the
reading code and the family's body in ``for _ in range(t):``.

Limits: strings never contain newlines; the ``words`` shape is the only one whose string holds
spaces. Variants render data only; constraints text comes from the family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Render = Callable[[Any], str]


@dataclass(frozen=True)
class Variant:
    """One input layout: reading code, renderer of one case, and the Input section text."""

    name: str
    read: tuple[str, ...]
    render: Render
    input_text: str  # format string; ``{c}`` is replaced by the family's constraints
    multi: bool = False  # first line t, then t cases (one answer line per case)


@dataclass(frozen=True)
class Shape:
    name: str
    variants: tuple[Variant, ...]

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(f"shape {self.name!r} has no variant {name!r}")


def _join(xs: Any) -> str:
    return " ".join(str(x) for x in xs)


def _lines(xs: Any) -> str:
    return "\n".join(str(x) for x in xs)


_MULTI = "The first line contains t (1 ≤ t ≤ 5), the number of test cases. "

INT = Shape(
    "int",
    (
        Variant("single", ("n = int(input())",), str, "A single line contains an integer n ({c})."),
        Variant(
            "multi",
            ("n = int(input())",),
            str,
            _MULTI + "Each of the next t lines contains an integer n ({c}).",
            multi=True,
        ),
    ),
)

PAIR = Shape(
    "pair",
    (
        Variant(
            "line",
            ("a, b = map(int, input().split())",),
            _join,
            "A single line contains two integers a and b ({c}).",
        ),
        Variant(
            "lines",
            ("a = int(input())", "b = int(input())"),
            _lines,
            "The first line contains an integer a, the second line an integer b ({c}).",
        ),
        Variant(
            "multi",
            ("a, b = map(int, input().split())",),
            _join,
            _MULTI + "Each of the next t lines contains two integers a and b ({c}).",
            multi=True,
        ),
    ),
)

TRIPLE = Shape(
    "triple",
    (
        Variant(
            "line",
            ("a, b, c = map(int, input().split())",),
            _join,
            "A single line contains three integers a, b and c ({c}).",
        ),
        Variant(
            "lines",
            ("a = int(input())", "b = int(input())", "c = int(input())"),
            _lines,
            "Three lines contain the integers a, b and c, one per line ({c}).",
        ),
    ),
)

LIST = Shape(
    "list",
    (
        Variant(
            "count",
            ("n = int(input())", "a = list(map(int, input().split()))"),
            lambda a: f"{len(a)}\n{_join(a)}",
            "The first line contains n, the second line n integers a_1, ..., a_n ({c}).",
        ),
        Variant(
            "line",
            ("a = list(map(int, input().split()))",),
            _join,
            "A single line contains the integers a_1, ..., a_n ({c}).",
        ),
        Variant(
            "column",
            ("n = int(input())", "a = [int(input()) for _ in range(n)]"),
            lambda a: f"{len(a)}\n{_lines(a)}",
            "The first line contains n, each of the next n lines one integer a_i ({c}).",
        ),
    ),
)

STR = Shape(
    "str",
    (
        Variant("single", ("s = input()",), str, "A single line contains a string s ({c})."),
        Variant(
            "multi",
            ("s = input()",),
            str,
            _MULTI + "Each of the next t lines contains a string s ({c}).",
            multi=True,
        ),
    ),
)

WORDS = Shape(
    "words",
    (
        Variant(
            "single",
            ("s = input()",),
            str,
            "A single line contains a sentence s of words separated by single spaces ({c}).",
        ),
        Variant(
            "multi",
            ("s = input()",),
            str,
            _MULTI + "Each of the next t lines contains a sentence s of words separated "
            "by single spaces ({c}).",
            multi=True,
        ),
    ),
)

SHAPES: dict[str, Shape] = {s.name: s for s in (INT, PAIR, TRIPLE, LIST, STR, WORDS)}


def program(variant: Variant, body: tuple[str, ...], imports: tuple[str, ...] = ()) -> str:
    """The whole program: imports, then reading code and body (looped for multi variants)."""
    lines = list(imports)
    if variant.multi:
        lines += ["t = int(input())", "for _ in range(t):"]
        lines += ["    " + line for line in variant.read + body]
    else:
        lines += list(variant.read + body)
    return "\n".join(lines) + "\n"

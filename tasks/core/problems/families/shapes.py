"""Input shapes of the bundled families and their input-format variants.

A *shape* fixes what one test case holds (an integer ``n``; a pair ``a, b``; a triple
``a, b, c``; a list ``a``; a string ``s``). A *variant* fixes how it is laid out on stdin and
gives the matching, formulaic Python 3 reading code, so that every family of one shape reads
its input with exactly the same lines. Multi-case variants (``t`` cases, one per line) wrap the
reading code and the family's body in ``for _ in range(t):``; *row* variants (int, str) put
the ``t`` cases on one line after the count and loop over them (``for n in map(int,
input().split()):``). Every shape has at least three training variants, so each family keeps
two of them for supervised training when one is its RL cell (:mod:`..splits`).

Every shape also has *reserved* variants (:attr:`Shape.reserved`), used only by evaluation
splits that hold input formats out (``test_templates``, ``test_families``): one case per line
until the end of input, with no count line, read by ``for line in sys.stdin:``. Their Input
text and their reading code differ from every training variant's.

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
    multi: bool = False  # several cases, one answer line per case: first line t, then t cases
    eof: bool = False  # with multi: no count line, cases until end of input (``line`` holds one)
    loop: str = ""  # with multi: the loop header that reads the cases (row variants), if not per line
    sep: str = "\n"  # with multi: what separates the rendered cases


@dataclass(frozen=True)
class Shape:
    """Training ``variants`` and ``reserved`` ones (evaluation only); names unique across both."""

    name: str
    variants: tuple[Variant, ...]
    reserved: tuple[Variant, ...] = ()

    def __post_init__(self) -> None:
        names = [v.name for v in self.variants + self.reserved]
        if len(set(names)) != len(names):
            raise ValueError(f"shape {self.name!r} has duplicate variant names: {names}")

    def variant(self, name: str) -> Variant:
        for v in self.variants + self.reserved:
            if v.name == name:
                return v
        raise KeyError(f"shape {self.name!r} has no variant {name!r}")


def _join(xs: Any) -> str:
    return " ".join(str(x) for x in xs)


def _lines(xs: Any) -> str:
    return "\n".join(str(x) for x in xs)


_MULTI = "The first line contains t (1 ≤ t ≤ 5), the number of test cases. "
_EOF = "The input holds between 1 and 5 test cases, one per line, up to the end of the input; "


def _eof(read: str, what: str, render: Render = str) -> Variant:
    """The reserved layout: one case per line until end of input, parsed from ``line``."""
    return Variant("eof", (read,), render, _EOF + f"each line contains {what} ({{c}}).", True, True)


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
        Variant(
            "row",
            (),
            str,
            _MULTI + "The second line contains the t integers n, separated by spaces ({c}).",
            multi=True,
            loop="for n in map(int, input().split()):",
            sep=" ",
        ),
    ),
    (_eof("n = int(line)", "an integer n"),),
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
    (_eof("a, b = map(int, line.split())", "two integers a and b", _join),),
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
        Variant(
            "multi",
            ("a, b, c = map(int, input().split())",),
            _join,
            _MULTI + "Each of the next t lines contains three integers a, b and c ({c}).",
            multi=True,
        ),
    ),
    (_eof("a, b, c = map(int, line.split())", "three integers a, b and c", _join),),
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
    (_eof("a = list(map(int, line.split()))", "the integers a_1, ..., a_n of one case", _join),),
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
        Variant(
            "row",
            (),
            str,
            _MULTI + "The second line contains the t strings s, separated by spaces ({c}).",
            multi=True,
            loop="for s in input().split():",
            sep=" ",
        ),
    ),
    (_eof('s = line.rstrip("\\n")', "a string s"),),
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
        Variant(
            "column",
            ("m = int(input())", 's = " ".join(input() for _ in range(m))'),
            lambda s: f"{len(s.split())}\n" + "\n".join(s.split()),
            "The first line contains m, the number of words of a sentence s; each of the next m "
            "lines contains one word ({c}).",
        ),
    ),
    (_eof('s = line.rstrip("\\n")', "a sentence s of words separated by single spaces"),),
)

SHAPES: dict[str, Shape] = {s.name: s for s in (INT, PAIR, TRIPLE, LIST, STR, WORDS)}


def program(variant: Variant, body: tuple[str, ...], imports: tuple[str, ...] = ()) -> str:
    """The whole program: imports, then reading code and body (looped for multi variants)."""
    lines = list(imports)
    if variant.eof:
        lines += ["import sys", "for line in sys.stdin:"]
        lines += ["    " + line for line in variant.read + body]
    elif variant.multi:
        lines += ["t = int(input())", variant.loop or "for _ in range(t):"]
        lines += ["    " + line for line in variant.read + body]
    else:
        lines += list(variant.read + body)
    return "\n".join(lines) + "\n"

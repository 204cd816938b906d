"""Judge-style output comparison, done on the host (expected outputs never enter the sandbox).

Contract: ``compare_outputs(actual, expected)`` splits both on any whitespace and compares
token by token, so runs of spaces/newlines and trailing whitespace never matter. An expected
token that parses as a float *and* contains ``.``, ``e`` or ``E`` matches an actual token whose
float value is within 1e-6 absolutely OR relatively; every other token must match exactly.
``compare_json(actual, expected)`` compares decoded JSON values: dicts by keys, lists by length
and element, two ints exactly, other numbers with the same 1e-6 tolerance (``bool`` is never a
number; an int too large for a float never matches a non-int), everything else with ==.
Both functions only return booleans: no input makes them raise (the actual side is program data).
Limits: no per-problem checkers (problems with several valid answers need their own checker).
"""

from __future__ import annotations

import math

TOLERANCE = 1e-6


def _close(a: float, e: float) -> bool:
    if math.isnan(a) or math.isnan(e):
        return math.isnan(a) and math.isnan(e)
    diff = abs(a - e)
    return diff <= TOLERANCE or diff <= TOLERANCE * abs(e)


def _is_float_token(token: str) -> bool:
    if not any(c in token for c in ".eE"):
        return False
    try:
        float(token)
    except ValueError:
        return False
    return True


def tokens_match(actual: str, expected: str) -> bool:
    if actual == expected:
        return True
    if not _is_float_token(expected):
        return False
    try:
        return _close(float(actual), float(expected))
    except ValueError:
        return False


def compare_outputs(actual: str, expected: str) -> bool:
    """True iff ``actual`` matches ``expected`` token by token (floats within 1e-6)."""
    got, want = actual.split(), expected.split()
    return len(got) == len(want) and all(tokens_match(a, e) for a, e in zip(got, want))


def compare_json(actual: object, expected: object) -> bool:
    """True iff two decoded JSON values are equal, numbers within 1e-6."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(actual) is type(expected) and actual == expected
    if isinstance(expected, int) and isinstance(actual, int):
        return actual == expected
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        if actual == expected:
            return True
        try:
            return _close(float(actual), float(expected))
        except OverflowError:  # an int beyond float range
            return False
    if isinstance(expected, list) and isinstance(actual, list):
        return len(actual) == len(expected) and all(compare_json(a, e) for a, e in zip(actual, expected))
    if isinstance(expected, dict) and isinstance(actual, dict):
        return actual.keys() == expected.keys() and all(
            compare_json(actual[k], expected[k]) for k in expected
        )
    return type(actual) is type(expected) and actual == expected

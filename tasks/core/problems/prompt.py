"""The one prompt format, shared by fine-tuning, sampling, RL and evaluation.

Layout (compact: a small model has a 512-token context)::

    <statement, with its public examples>
    RATING: 800
    TAGS: math, implementation
    LANGUAGE: PYTHON3
    SOLUTION:
    <program>            <- the target; the caller appends EOS (or END_MARKER)

The statement is ``problem.description``; if it has no ``Example`` section and the problem has
public tests, the public tests are appended as ``Example`` blocks. Private and generated tests
never appear. Metadata conditioning follows AlphaCode: training prompts carry the true rating
and tags; with ``rng`` (sampling time) the rating is drawn uniformly from
:data:`SAMPLED_RATINGS` and the tags are a random subset of the problem's tags plus, with
probability 1/2, one tag from :data:`POPULAR_TAGS`, shuffled. A missing rating prints
``RATING: unknown``; missing tags print ``TAGS: none``. ``ASSERT`` problems (HumanEval) get the
same header after their function prompt; :func:`assemble_program` then judges
``description + code``: a completion restating the whole function redefines it, one giving only
the indented body continues it.

Limits: :func:`extract_program` only cuts at :data:`END_MARKER` and strips a Markdown fence; it
does not repair truncated code.
"""

from __future__ import annotations

import random
import re

from .schema import Language, Problem, TestStyle

END_MARKER = "<END>"
SOLUTION_HEADER = "SOLUTION:\n"
SAMPLED_RATINGS: tuple[int, ...] = tuple(range(800, 1300, 100))
POPULAR_TAGS: tuple[str, ...] = (
    "implementation",
    "math",
    "strings",
    "sortings",
    "brute force",
    "greedy",
    "number theory",
    "constructive algorithms",
)
_FENCE = re.compile(r"```[a-zA-Z0-9_+-]*\n(.*?)(?:```|\Z)", re.DOTALL)
_HAS_EXAMPLE = re.compile(r"^\s*examples?\s*$", re.IGNORECASE | re.MULTILINE)


def format_prompt(problem: Problem, *, language: str = "PYTHON3", rng: random.Random | None = None) -> str:
    """Statement + metadata + ``SOLUTION:`` line; the program follows directly."""
    if language not in Language.__members__:
        raise ValueError(f"unknown language {language!r}; use one of {', '.join(Language.__members__)}")
    rating, tags = _metadata(problem, rng)
    header = (
        f"RATING: {rating}\nTAGS: {', '.join(tags) if tags else 'none'}\n"
        f"LANGUAGE: {language}\n{SOLUTION_HEADER}"
    )
    return _statement(problem).rstrip("\n") + "\n\n" + header


def format_training_example(problem: Problem, solution: str) -> tuple[str, str]:
    """(prompt, target): the true-metadata prompt and the solution text (caller adds EOS)."""
    return format_prompt(problem), solution


def extract_program(completion: str) -> str:
    """The code of a completion: cut at END_MARKER, unwrap a Markdown fence if present."""
    code = completion.split(END_MARKER, 1)[0]
    fenced = _FENCE.search(code)
    if fenced:
        code = fenced.group(1)
    return code.strip("\n") + "\n" if code.strip() else ""


def assemble_program(problem: Problem, code: str) -> str:
    """The program to judge for extracted ``code``: itself, or for ASSERT problems
    ``description + code`` (the prompt's function header, continued or redefined)."""
    if problem.test_style is TestStyle.ASSERT:
        return problem.description.rstrip("\n") + "\n" + code
    return code


def _statement(problem: Problem) -> str:
    text = problem.description
    if problem.public_tests.input and not _HAS_EXAMPLE.search(text):
        blocks = [
            f"Example\nInput\n{i.rstrip()}\nOutput\n{o.rstrip()}" for i, o in problem.public_tests.pairs()
        ]
        text = text.rstrip("\n") + "\n\n" + "\n\n".join(blocks)
    return text


def _metadata(problem: Problem, rng: random.Random | None) -> tuple[str, list[str]]:
    if rng is None:
        return (str(problem.cf_rating) if problem.cf_rating else "unknown"), list(problem.cf_tags)
    tags = [t for t in problem.cf_tags if rng.random() < 0.5]
    if rng.random() < 0.5:
        extra = rng.choice(POPULAR_TAGS)
        if extra not in tags:
            tags.append(extra)
    rng.shuffle(tags)
    return str(rng.choice(SAMPLED_RATINGS)), tags

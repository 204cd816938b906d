"""The shared prompt format: what it shows, what it hides, and program extraction."""

import random

import pytest

from tasks.core.problems import (
    END_MARKER,
    Problem,
    Tests,
    bundled_problems,
    extract_program,
    format_prompt,
    format_training_example,
)


def _secret_problem(**kw) -> Problem:
    return Problem(
        name="secret",
        description="Add two numbers.\n\nInput\na b\n\nOutput\na+b\n",
        public_tests=Tests(input=("1 2\n",), output=("3\n",)),
        private_tests=Tests(input=("PRIVATE_IN 777\n",), output=("PRIVATE_OUT 888\n",)),
        generated_tests=Tests(input=("GENERATED_IN 999\n",), output=("GENERATED_OUT 555\n",)),
        cf_rating=1200,
        cf_tags=("math", "greedy"),
        **kw,
    )


def test_hidden_tests_never_appear_in_prompt():
    p = _secret_problem()
    for rng in (None, random.Random(0)):
        prompt = format_prompt(p, rng=rng)
        for marker in ("PRIVATE", "GENERATED", "777", "888", "999", "555"):
            assert marker not in prompt


def test_public_example_appended_when_statement_lacks_one():
    prompt = format_prompt(_secret_problem())
    assert "Example\nInput\n1 2\nOutput\n3" in prompt


def test_example_not_duplicated_for_bundled_statements():
    p = next(bundled_problems("train", per_family=1))
    assert format_prompt(p).count("Example\n") == len(p.public_tests)


def test_prompt_carries_metadata_and_ends_with_solution_line():
    prompt = format_prompt(_secret_problem())
    assert "RATING: 1200\nTAGS: math, greedy\nLANGUAGE: PYTHON3\n" in prompt
    assert prompt.endswith("SOLUTION:\n")


def test_sampling_rng_randomises_metadata_deterministically():
    p = _secret_problem()
    prompts = {format_prompt(p, rng=random.Random(s)) for s in range(20)}
    assert len(prompts) > 3
    assert format_prompt(p, rng=random.Random(5)) == format_prompt(p, rng=random.Random(5))


def test_unknown_language_is_rejected():
    with pytest.raises(ValueError, match="PYTHON3"):
        format_prompt(_secret_problem(), language="COBOL")


def test_training_example_is_prompt_and_solution():
    p = next(bundled_problems("train", per_family=1))
    prompt, target = format_training_example(p, p.solutions.solution[0])
    assert prompt == format_prompt(p) and target == p.solutions.solution[0]


def test_extract_program_cuts_at_end_marker():
    assert extract_program(f"print(1)\n{END_MARKER}\ngarbage") == "print(1)\n"


def test_extract_program_strips_markdown_fence():
    assert extract_program("```python\nx = 1\nprint(x)\n```\nsome prose") == "x = 1\nprint(x)\n"


def test_extract_program_keeps_leading_indentation():
    assert extract_program("    return a + b\n") == "    return a + b\n"


def test_bundled_prompts_are_compact():
    longest = max(
        len(format_prompt(p) + p.solutions.solution[0])
        for s in ("train", "test_families")
        for p in bundled_problems(s, per_family=6)
    )
    assert longest < 1200  # characters; well inside 512 tokens of any byte-level BPE


def test_assemble_program_prefixes_function_header_for_assert_problems():
    from tasks.core.problems import assemble_program, load_humaneval

    p = next(load_humaneval())
    assert assemble_program(p, "    return 1\n").startswith(p.description.rstrip("\n") + "\n    return 1")
    stdio = next(bundled_problems("train", per_family=1))
    assert assemble_program(stdio, "print(1)\n") == "print(1)\n"

"""Problems: the CodeContests-schema model, bundled procedural families, the prompt format,
and streaming loaders/exporters (CodeContests Parquet, HumanEval, JSONL, Parquet)."""

from .bundled import BUNDLED_SPLITS, bundled_problems, list_families
from .errors import ProblemLoadError
from .loaders import (
    export_problems,
    load_code_contests,
    load_humaneval,
    load_problem_source,
    load_problems,
    load_sandboxfusion_jsonl,
)
from .prompt import END_MARKER, assemble_program, extract_program, format_prompt, format_training_example
from .schema import Language, Problem, Solutions, Source, Tests, TestStyle

__all__ = [
    "Problem",
    "Tests",
    "Solutions",
    "Language",
    "Source",
    "TestStyle",
    "bundled_problems",
    "BUNDLED_SPLITS",
    "list_families",
    "format_prompt",
    "format_training_example",
    "extract_program",
    "END_MARKER",
    "assemble_program",
    "load_code_contests",
    "load_humaneval",
    "load_problems",
    "export_problems",
    "load_problem_source",
    "load_sandboxfusion_jsonl",
    "ProblemLoadError",
]

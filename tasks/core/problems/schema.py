"""The one problem model of the project, in DeepMind's CodeContests schema.

Fields and enum numbers follow ``contest_problem.proto`` (not the Hugging Face dataset card,
which numbers ATCODER=5 and AIZU=6; :data:`HF_SOURCE_TO_PROTO` is the single mapping table).
Two fields are ours: ``test_style`` (so HumanEval/APPS-style problems fit) and ``entry_point``
(the function a call-based or assert-style test calls), plus free-form ``tags`` for provenance
of bundled problems (family, variant, split).

Limits: tests are held as strings; a problem that accepts several correct outputs needs a
checker, which this model does not describe (the judge compares tokens, floats with 1e-6).
"""

from __future__ import annotations

from enum import Enum, IntEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Language(IntEnum):
    UNKNOWN_LANGUAGE = 0
    PYTHON = 1  # Python 2 in CodeContests
    CPP = 2
    PYTHON3 = 3
    JAVA = 4


class Source(IntEnum):
    UNKNOWN_SOURCE = 0
    CODECHEF = 1
    CODEFORCES = 2
    HACKEREARTH = 3
    CODEJAM = 4
    ATCODER = 6
    AIZU = 7


# The HF dataset card's numbering -> the proto's. Identity where they agree.
HF_SOURCE_TO_PROTO: dict[int, Source] = {
    0: Source.UNKNOWN_SOURCE,
    1: Source.CODECHEF,
    2: Source.CODEFORCES,
    3: Source.HACKEREARTH,
    4: Source.CODEJAM,
    5: Source.ATCODER,
    6: Source.AIZU,
}


class TestStyle(str, Enum):
    __test__ = False  # not a pytest test class, despite its name

    STDIO = "stdio"  # program reads stdin, writes stdout (CodeContests, Codeforces)
    CALL = "call"  # APPS-style: function name, JSON argument lists, expected return values
    ASSERT = "assert"  # HumanEval/MBPP: program, then test code; passes iff the test code ran to its end


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Tests(_Frozen):
    """Parallel lists, as in the proto: ``input[i]`` is answered by ``output[i]``."""

    __test__ = False  # not a pytest test class, despite its name

    input: tuple[str, ...] = ()
    output: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _same_length(self) -> Tests:
        if len(self.input) != len(self.output):
            raise ValueError(
                f"tests have {len(self.input)} inputs but {len(self.output)} outputs; "
                "each input needs exactly one expected output"
            )
        return self

    def __len__(self) -> int:
        return len(self.input)

    def pairs(self) -> list[tuple[str, str]]:
        return list(zip(self.input, self.output))


class Solutions(_Frozen):
    language: tuple[Language, ...] = ()
    solution: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _same_length(self) -> Solutions:
        if len(self.language) != len(self.solution):
            raise ValueError("solutions.language and solutions.solution differ in length")
        return self

    def of(self, *languages: Language) -> list[str]:
        return [s for lang, s in zip(self.language, self.solution) if lang in languages]


class Duration(_Frozen):
    seconds: int = 0
    nanos: int = 0

    @property
    def total_seconds(self) -> float:
        return self.seconds + self.nanos / 1e9


class Problem(_Frozen):
    name: str = Field(min_length=1)
    description: str
    public_tests: Tests = Tests()
    private_tests: Tests = Tests()
    generated_tests: Tests = Tests()
    source: Source = Source.UNKNOWN_SOURCE
    difficulty: int = 0
    solutions: Solutions = Solutions()
    incorrect_solutions: Solutions = Solutions()
    cf_contest_id: int = 0
    cf_index: str = ""
    cf_points: float = 0.0
    cf_rating: int = 0
    cf_tags: tuple[str, ...] = ()
    is_description_translated: bool = False
    untranslated_description: str = ""
    time_limit: Duration | None = None
    memory_limit_bytes: int = 0
    input_file: str = ""
    output_file: str = ""
    # --- ours, not in the proto ---
    test_style: TestStyle = TestStyle.STDIO
    entry_point: str = ""
    tags: dict[str, str] = Field(default_factory=dict)

    @property
    def hidden_tests(self) -> Tests:
        """Private + generated tests: what rewards and evaluation use; never shown in a prompt."""
        return Tests(
            input=self.private_tests.input + self.generated_tests.input,
            output=self.private_tests.output + self.generated_tests.output,
        )

    @property
    def time_limit_s(self) -> float | None:
        return self.time_limit.total_seconds if self.time_limit else None

"""Loaders: HF CodeContests Parquet, HumanEval, JSONL/Parquet round trips, bad input, dispatch."""

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.core.problems import (
    Language,
    ProblemLoadError,
    Source,
    TestStyle,
    bundled_problems,
    export_problems,
    load_code_contests,
    load_humaneval,
    load_problem_source,
    load_problems,
    load_sandboxfusion_jsonl,
)

# Written independently of the loader: the schema of deepmind/code_contests on the HF hub.
_S, _I = pa.string(), pa.int64()
_TESTS = pa.struct([("input", pa.list_(_S)), ("output", pa.list_(_S))])
_SOLS = pa.struct([("language", pa.list_(_I)), ("solution", pa.list_(_S))])
HF_SCHEMA = pa.schema(
    [
        ("name", _S),
        ("description", _S),
        ("public_tests", _TESTS),
        ("private_tests", _TESTS),
        ("generated_tests", _TESTS),
        ("source", _I),
        ("difficulty", _I),
        ("solutions", _SOLS),
        ("incorrect_solutions", _SOLS),
        ("cf_contest_id", _I),
        ("cf_index", _S),
        ("cf_points", pa.float32()),
        ("cf_rating", _I),
        ("cf_tags", pa.list_(_S)),
        ("is_description_translated", pa.bool_()),
        ("untranslated_description", _S),
        ("time_limit", pa.struct([("seconds", _I), ("nanos", _I)])),
        ("memory_limit_bytes", _I),
        ("input_file", _S),
        ("output_file", _S),
    ]
)
ROW = {
    "name": "1548_A. Web of Lies",
    "description": "Statement\n\nInput\nn\n\nOutput\nx\n",
    "public_tests": {"input": ["1 2\n"], "output": ["3\n"]},
    "private_tests": {"input": ["4 5\n", "6 7\n"], "output": ["9\n", "13\n"]},
    "generated_tests": {"input": ["0 0\n"], "output": ["0\n"]},
    "source": 5,
    "difficulty": 8,
    "solutions": {"language": [3, 2], "solution": ["print(3)", "int main(){}"]},
    "incorrect_solutions": {"language": [1], "solution": ["print 4"]},
    "cf_contest_id": 1548,
    "cf_index": "A",
    "cf_points": 500.0,
    "cf_rating": 1400,
    "cf_tags": ["brute force", "graphs"],
    "is_description_translated": True,
    "untranslated_description": "Условие",
    "time_limit": {"seconds": 2, "nanos": 500000000},
    "memory_limit_bytes": 256000000,
    "input_file": "in.txt",
    "output_file": "out.txt",
}


def _write_hf(path: Path, rows: list[dict], schema: pa.Schema = HF_SCHEMA) -> Path:
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def test_code_contests_parquet_round_trips_every_field(tmp_path):
    _write_hf(tmp_path / "valid-00000-of-00001.parquet", [ROW])
    (p,) = load_code_contests(tmp_path, "valid")
    assert p.name == ROW["name"] and p.description == ROW["description"]
    assert p.public_tests.pairs() == [("1 2\n", "3\n")]
    assert p.private_tests.output == ("9\n", "13\n") and p.generated_tests.input == ("0 0\n",)
    assert p.source is Source.ATCODER  # HF 5 -> proto 6
    assert p.difficulty == 8
    assert p.solutions.language == (Language.PYTHON3, Language.CPP)
    assert p.solutions.solution == ("print(3)", "int main(){}")
    assert p.incorrect_solutions.of(Language.PYTHON) == ["print 4"]
    assert (p.cf_contest_id, p.cf_index, p.cf_points, p.cf_rating) == (1548, "A", 500.0, 1400)
    assert p.cf_tags == ("brute force", "graphs")
    assert p.is_description_translated and p.untranslated_description == "Условие"
    assert p.time_limit_s == 2.5 and p.memory_limit_bytes == 256000000
    assert (p.input_file, p.output_file) == ("in.txt", "out.txt")


def test_code_contests_null_time_limit_and_shard_order(tmp_path):
    second = dict(ROW, name="second", time_limit=None)
    _write_hf(tmp_path / "train-00001-of-00002.parquet", [second])
    _write_hf(tmp_path / "train-00000-of-00002.parquet", [ROW])
    problems = list(load_code_contests(tmp_path, "train"))
    assert [p.name for p in problems] == [ROW["name"], "second"]
    assert problems[1].time_limit is None


def test_code_contests_missing_split_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="test-"):
        next(load_code_contests(tmp_path, "test"))


def test_missing_column_names_file_and_field(tmp_path):
    schema = pa.schema([f for f in HF_SCHEMA if f.name != "cf_tags"])
    path = _write_hf(
        tmp_path / "test-00000-of-00001.parquet", [{k: v for k, v in ROW.items() if k != "cf_tags"}], schema
    )
    with pytest.raises(ProblemLoadError, match="cf_tags") as info:
        next(load_code_contests(tmp_path, "test"))
    assert info.value.path == str(path) and info.value.field == "cf_tags"


def test_wrong_column_type_names_file_and_field(tmp_path):
    schema = HF_SCHEMA.set(HF_SCHEMA.get_field_index("cf_rating"), pa.field("cf_rating", _S))
    path = _write_hf(tmp_path / "bad.parquet", [dict(ROW, cf_rating="high")], schema)
    with pytest.raises(ProblemLoadError, match="bad.parquet.*cf_rating") as info:
        next(load_problems(path))
    assert info.value.field == "cf_rating"


def test_bad_row_value_names_row_and_field(tmp_path):
    bad = dict(ROW, private_tests={"input": ["1\n", "2\n"], "output": ["1\n"]})
    path = _write_hf(tmp_path / "rows.parquet", [ROW, bad])
    with pytest.raises(ProblemLoadError) as info:
        list(load_problems(path))
    assert info.value.row == 1 and info.value.field == "private_tests"


def test_humaneval_loads_164_assert_problems_offline():
    problems = list(load_humaneval())
    assert len(problems) == 164
    p = problems[0]
    assert p.test_style is TestStyle.ASSERT and p.entry_point
    assert p.private_tests.input[0].rstrip().endswith(f"check({p.entry_point})")
    assert p.solutions.solution[0].startswith(p.description)


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".parquet"])
def test_export_then_load_round_trips(tmp_path, suffix):
    problems = list(bundled_problems("valid", per_family=1)) + list(load_humaneval())[:3]
    path = tmp_path / f"out{suffix}"
    assert export_problems(iter(problems), path) == len(problems)
    assert list(load_problems(path)) == problems
    assert not [f for f in tmp_path.iterdir() if f.name.endswith(".tmp")]


def test_truncated_jsonl_line_names_file_line_and_field(tmp_path):
    path = tmp_path / "p.jsonl"
    export_problems(bundled_problems("valid", per_family=1), path)
    lines = path.read_text().splitlines()
    cut = lines[2][: lines[2].index('"private_tests"') + 40]
    path.write_text("\n".join(lines[:2] + [cut]) + "\n")
    with pytest.raises(ProblemLoadError, match="p.jsonl, row 3, field 'private_tests'"):
        list(load_problems(path))


def test_invalid_jsonl_value_names_line_and_field(tmp_path):
    path = tmp_path / "p.jsonl.gz"
    export_problems(bundled_problems("valid", per_family=1), path)
    with gzip.open(path, "rt") as fh:
        first = json.loads(fh.readline())
    first["memory_limit_bytes"] = "lots"
    with gzip.open(path, "wt") as fh:
        fh.write(json.dumps(first) + "\n")
    with pytest.raises(ProblemLoadError) as info:
        list(load_problems(path))
    assert info.value.row == 1 and info.value.field == "memory_limit_bytes"


def test_unsupported_suffix_is_rejected(tmp_path):
    with pytest.raises(ValueError, match=".jsonl"):
        export_problems([], tmp_path / "x.csv")


def test_load_problem_source_dispatch(tmp_path):
    _write_hf(tmp_path / "valid-00000-of-00001.parquet", [ROW])
    assert next(load_problem_source("bundled", "train", per_family=1)).tags["split"] == "train"
    assert next(load_problem_source("humaneval", "test")).name == "HumanEval/0"
    assert next(load_problem_source(f"code_contests:{tmp_path}", "valid")).name == ROW["name"]
    export_problems([next(bundled_problems("valid", per_family=1))], tmp_path / "f.jsonl")
    assert len(list(load_problem_source(str(tmp_path / "f.jsonl"), "valid"))) == 1
    with pytest.raises(ValueError, match="unknown problem source"):
        load_problem_source("nowhere", "train")


REAL = Path(__file__).resolve().parents[3] / "shared" / "realdata" / "code_contests_sample.jsonl"


@pytest.mark.skipif(not REAL.exists(), reason="shared real-data sample not present")
def test_sandboxfusion_sample_loads_real_problems():
    problems = list(load_sandboxfusion_jsonl(REAL))
    assert len(problems) == 20
    assert all(len(p.private_tests) > 0 and p.description for p in problems)
    assert {p.source for p in problems} <= {Source.CODECHEF, Source.CODEFORCES}
    assert all(p.difficulty > 0 for p in problems)

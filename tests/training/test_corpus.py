from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.core.corpus import CorpusError, CorpusSpec, load_corpus


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_duplicates_are_dropped_by_content(tmp_path):
    root = _tree(tmp_path, {"a.py": "x = 1\n", "b.py": "x = 1\n", "sub/c.py": "y = 2\n", "d.py": "z = 3\n"})
    corpus = load_corpus(CorpusSpec(kind="directory", path=str(root), valid_fraction=0.0))
    assert corpus.stats.duplicates_dropped == 1
    assert sorted(corpus.train_texts) == ["x = 1\n", "y = 2\n", "z = 3\n"]


def test_holdout_is_disjoint_deterministic_and_nonempty(tmp_path):
    root = _tree(tmp_path, {f"m{i}.py": f"value = {i}\n" for i in range(50)})
    spec = CorpusSpec(kind="directory", path=str(root), valid_fraction=0.2, seed=3)
    first, second = load_corpus(spec), load_corpus(spec)
    assert first == second
    assert first.valid_texts and not set(first.valid_texts) & set(first.train_texts)
    assert len(first.train_texts) + len(first.valid_texts) == 50
    assert first.stats.bytes_valid == sum(len(t) for t in first.valid_texts)


def test_tiny_corpus_still_gets_one_validation_document(tmp_path):
    root = _tree(tmp_path, {"a.py": "a = 1\n", "b.py": "b = 2\n"})
    corpus = load_corpus(CorpusSpec(kind="directory", path=str(root), valid_fraction=0.01))
    assert len(corpus.valid_texts) == 1 and len(corpus.train_texts) == 1


def test_glob_and_skipped_directories(tmp_path):
    root = _tree(
        tmp_path,
        {"keep.py": "k = 1\n", "notes.txt": "n\n", "tests/t.py": "t = 1\n", "site-packages/s.py": "s = 1\n"},
    )
    corpus = load_corpus(CorpusSpec(kind="directory", path=str(root), valid_fraction=0.0))
    assert corpus.train_texts == ("k = 1\n",)


def test_max_bytes_caps_the_corpus(tmp_path):
    root = _tree(tmp_path, {f"m{i}.py": "x" * 100 + f"{i:03d}\n" for i in range(40)})
    corpus = load_corpus(CorpusSpec(kind="directory", path=str(root), max_bytes=1000, valid_fraction=0.0))
    assert corpus.stats.bytes_train <= 1000 and corpus.stats.files == 9


def test_text_kind_splits_on_separator(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("one<|endoftext|>two<|endoftext|>  <|endoftext|>one")
    corpus = load_corpus(CorpusSpec(kind="text", path=str(path), valid_fraction=0.0))
    assert sorted(corpus.train_texts) == ["one", "two"] and corpus.stats.duplicates_dropped == 1


def test_parquet_kind_reads_the_column_and_names_a_wrong_one(tmp_path):
    path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"content": ["a = 1", None, "b = 2"]}), path)
    corpus = load_corpus(
        CorpusSpec(kind="parquet", path=str(path), text_column="content", valid_fraction=0.0)
    )
    assert sorted(corpus.train_texts) == ["a = 1", "b = 2"]
    with pytest.raises(CorpusError, match="text_column"):
        load_corpus(CorpusSpec(kind="parquet", path=str(path), text_column="text"))


def test_missing_directory_error_names_path_and_field(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError) as info:
        load_corpus(CorpusSpec(kind="directory", path=str(missing)))
    assert isinstance(info.value, CorpusError)
    assert str(missing) in str(info.value) and "corpus.path" in str(info.value)


def test_stdlib_kind_reads_the_interpreter_library():
    corpus = load_corpus(CorpusSpec(max_bytes=50_000))
    assert corpus.stats.files > 0 and 0 < corpus.stats.bytes_train + corpus.stats.bytes_valid <= 50_000


def test_path_rules_per_kind():
    with pytest.raises(ValueError, match="corpus.path is required"):
        CorpusSpec(kind="directory")
    with pytest.raises(ValueError, match="must be unset"):
        CorpusSpec(kind="stdlib", path="/tmp")

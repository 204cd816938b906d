from tasks.core.sandbox import compare_json, compare_outputs


def test_whitespace_runs_and_trailing_newlines_are_ignored():
    assert compare_outputs("1  2\n3\n\n  ", "1 2 3")


def test_token_count_must_match():
    assert not compare_outputs("1 2", "1 2 3")


def test_integer_expected_token_compares_exactly():
    assert not compare_outputs("10.0", "10")


def test_float_within_absolute_tolerance():
    assert compare_outputs("0.3333335", "0.333333")


def test_float_within_relative_tolerance():
    assert compare_outputs("1000000.5", "1000000.0")


def test_float_outside_tolerance():
    assert not compare_outputs("0.3334", "0.3333")


def test_exponent_token_is_a_float():
    assert compare_outputs("100000.0000001", "1e5")


def test_non_numeric_actual_against_float_is_wrong():
    assert not compare_outputs("abc", "1.5")


def test_words_compare_exactly():
    assert not compare_outputs("Yes", "YES")


def test_json_floats_are_tolerant():
    assert compare_json([1, 0.1 + 0.2, {"a": 2.0000001}], [1, 0.3, {"a": 2}])


def test_json_bool_is_not_a_number():
    assert not compare_json(True, 1)


def test_json_big_ints_compare_exactly():
    assert not compare_json(10**20 + 1, 10**20)

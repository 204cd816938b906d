import numpy as np
import pytest

from tasks.core.report import (
    markdown_table,
    plot_cluster_sizes,
    plot_filter_funnel,
    plot_n_at_k,
    plot_pass_at_k,
)

PNG = b"\x89PNG\r\n\x1a\n"


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG
    assert len(data) > 10_000  # a drawn figure, not an empty canvas
    assert not [p for p in path.parent.iterdir() if ".tmp" in p.name]


def test_plot_pass_at_k_writes_png(tmp_path):
    ks = [1, 10, 100]
    curves = {
        "sft": (ks, [0.1, 0.3, 0.5], [0.05, 0.2, 0.4], [0.15, 0.4, 0.6]),
        "rl": (ks, [0.2, 0.4, 0.6], None, None),
    }
    out = plot_pass_at_k(curves, tmp_path / "sub" / "pass.png")
    assert out == tmp_path / "sub" / "pass.png"
    _assert_png(out)


def test_plot_n_at_k_writes_png(tmp_path):
    curves = {"10@k": ([10, 100, 1000], [0.05, 0.1, 0.2], None, None)}
    _assert_png(plot_n_at_k(curves, tmp_path / "nk.png"))


def test_plot_filter_funnel_writes_png(tmp_path):
    stages = [("sampled", 1_000_000), ("public pass", 12_000), ("clusters", 300), ("none", 0)]
    _assert_png(plot_filter_funnel(stages, tmp_path / "funnel.png"))


def test_plot_cluster_sizes_writes_png(tmp_path):
    sizes = np.random.default_rng(0).zipf(1.8, 300)
    _assert_png(plot_cluster_sizes(sizes, tmp_path / "clusters.png"))


def test_plot_overwrites_existing_file_atomically(tmp_path):
    target = tmp_path / "c.png"
    target.write_bytes(b"old")
    _assert_png(plot_cluster_sizes([5, 3, 1], target))


def test_plots_reject_empty_or_ragged_input(tmp_path):
    with pytest.raises(ValueError, match="at least one curve"):
        plot_pass_at_k({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="unequal-length"):
        plot_pass_at_k({"a": ([1, 2], [0.1], None, None)}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_markdown_table_unions_columns_and_formats_cells():
    table = markdown_table([{"system": "sft", "pass@1": 0.123456}, {"system": "a|b", "10@k": float("nan")}])
    assert table.splitlines() == [
        "| system | pass@1 | 10@k |",
        "|---|---|---|",
        "| sft | 0.1235 |  |",
        "| a\\|b |  |  |",
    ]


def test_markdown_table_of_no_rows_is_empty():
    assert markdown_table([]) == ""

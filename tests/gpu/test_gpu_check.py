"""The GPU check in the mode CI runs (CPU, tiny model): every section passes and the JSON holds
the figures a GPU session reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # ~2 min on 2 CPU cores; `make test` (CI) runs it, test-fast does not

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_cpu_tiny_mode(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
    cmd = [
        sys.executable,
        str(ROOT / "tests/gpu/gpu_check.py"),
        "--cpu",
        "--out",
        str(out),
        "--work",
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    report = json.loads(out.read_text())
    assert report["ok"] and (report["device"], report["dtype"]) == ("cpu", "bfloat16")
    assert report["sampling_dtype"] == "float32"
    assert report["model"]["architecture"].startswith("qwen2")
    sample, train, grpo = (report["sections"][k] for k in ("sample", "train", "grpo"))
    assert sample["samples"] == 1000 and sample["problems"] == 10 and sample["tokens_per_s"] > 0
    assert train["steps"] == 30 and train["resumed_from_step"] == 20 and train["dtype"] == "bfloat16"
    assert train["tokens_per_s"] > 0
    assert grpo["steps"] == 3 and len(grpo["step_seconds"]) == 3 and grpo["generation"] == "transformers"
    for section in (sample, train, grpo):
        assert section["peak_gpu_mem_gib"] is None and section["peak_rss_gib"] > 0

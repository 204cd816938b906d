"""A failing Python program's stderr in the sandbox is what the interpreter itself prints for an
uncaught exception (the runner displays it with ``sys.__excepthook__``, without its own frame)."""

from __future__ import annotations

import subprocess

import pytest

from tasks.core.sandbox import Job, TestCase, Verdict

# Each program first removes its own file (run directly; in the sandbox there is none), so
# neither side can show source lines.
PROGRAMS = {
    "assert in a function": "def check(x):\n    assert x == 2\n\ncheck(1)\n",
    "chained": (
        "def f():\n    try:\n        {}['k']\n    except KeyError as e:\n"
        "        raise ValueError('bad') from e\n\nf()\n"
    ),
    "during handling": "try:\n    1 / 0\nexcept ZeroDivisionError:\n    undefined_name\n",
    "group with a note": (
        "e = ExceptionGroup('g', [ValueError(1), TypeError('t')])\ne.add_note('a note')\nraise e\n"
    ),
    "repeated frames": "def f(n):\n    if n == 0:\n        raise ValueError(n)\n    return f(n - 1)\n\nf(30)\n",
    "str fails": "class E(Exception):\n    def __str__(self):\n        raise RuntimeError\n\nraise E()\n",
}
PRELUDE = "import os\nif os.path.exists(__file__):\n    os.remove(__file__)\n"


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_stderr_is_the_interpreters_own_report(judge, tmp_path, name):
    program = PRELUDE + PROGRAMS[name]
    (tmp_path / "main.py").write_text(program)
    direct = subprocess.run(
        ["/usr/bin/python3", "-I", "-S", "main.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert direct.returncode == 1
    res = judge.run(Job(program=program, tests=(TestCase("", None),))).results[0]
    assert res.verdict is Verdict.RUNTIME_ERROR and res.exit_code == 1
    direct_stderr = direct.stderr.replace(str(tmp_path / "main.py"), "main.py")  # run by its path
    expected = direct_stderr.encode()[:1024].decode("utf-8", "replace")  # the judge keeps a prefix
    assert res.stderr_prefix == expected

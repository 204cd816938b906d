"""Computed cache keys: a stage's code fingerprint is exactly what its core module imports.

The walk runs over the real repository files (or a byte-for-byte copy of them in which one file
is edited), never over a mock of the import graph.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tasks.core import fingerprint as fp
from tasks.core.manifest import Manifest, plan_stage
from tasks.core.stages import Stage

ENTRIES = {
    Stage.PROBLEMS: "tasks.core.stages.problems",
    Stage.PRETRAIN: "tasks.core.stages.pretrain",
    Stage.FINETUNE: "tasks.core.stages.finetune",
    Stage.SAMPLE: "tasks.core.stages.sample",
    Stage.FILTER: "tasks.core.stages.filter",
    Stage.CLUSTER: "tasks.core.stages.cluster",
    Stage.EVALUATE: "tasks.core.stages.evaluate",
    Stage.RL: "tasks.core.stages.rl",
    Stage.SFT_CONTINUE: "tasks.core.stages.sft_continue",
    Stage.SELECT: "tasks.core.stages.select",
    Stage.CURVE: "tasks.core.stages.curve",
    Stage.REPORT: "tasks.core.stages.report",
}
EVERY_STAGE = {
    "tasks/__init__.py",
    "tasks/core/__init__.py",
    "tasks/core/stages/__init__.py",
    "tasks/core/manifest.py",
    "tasks/core/fingerprint.py",
}
SANDBOX = {
    f"tasks/core/sandbox/{name}.py"
    for name in ("__init__", "judge", "compare", "bwrap", "runner", "seccomp", "server", "envelopes", "types")
}
SAMPLING = {
    f"tasks/core/sampling/{name}.py" for name in ("__init__", "params", "backend", "hf", "vllm", "shard")
}
PROBLEMS = {
    "tasks/core/problems/__init__.py",
    "tasks/core/problems/prompt.py",
    "tasks/core/problems/schema.py",
}
MUST = {
    Stage.PROBLEMS: PROBLEMS | {"tasks/core/stages/problems.py"},
    Stage.PRETRAIN: {"tasks/core/corpus.py", "tasks/core/modeling.py", "tasks/core/stages/pretrain.py"},
    Stage.FINETUNE: PROBLEMS | {"tasks/core/stages/pretrain.py", "tasks/core/stages/finetune.py"},
    Stage.SAMPLE: PROBLEMS | SAMPLING | {"tasks/core/samplestore.py", "tasks/core/stages/sample.py"},
    Stage.FILTER: SANDBOX | SAMPLING | {"tasks/core/execution.py", "tasks/core/stages/judging.py"},
    Stage.CLUSTER: SANDBOX
    | {"tasks/core/clustering.py", "tasks/core/testgen.py", "tasks/core/stages/filter.py"},
    Stage.EVALUATE: SANDBOX
    | {"tasks/core/metrics.py", "tasks/core/report.py", "tasks/core/stages/filter.py"},
    Stage.RL: SANDBOX
    | {"tasks/core/rl/__init__.py", "tasks/core/rl/rewards.py", "tasks/core/stages/judging.py"},
    Stage.SFT_CONTINUE: PROBLEMS
    | {"tasks/core/stages/finetune.py", "tasks/core/stages/sft_continue.py", "tasks/core/training/loop.py"},
    Stage.SELECT: {"tasks/core/stages/select.py", "tasks/core/stages/evaluate.py"},
    Stage.CURVE: {"tasks/core/scaling.py", "tasks/core/metrics.py", "tasks/core/stages/evaluate.py"},
    Stage.REPORT: {"tasks/core/metrics.py", "tasks/core/stages/evaluate.py", "tasks/core/stages/report.py"},
}
# config.py is imported under TYPE_CHECKING only: configs reach keys through their dumped values
MUST_NOT = {
    Stage.PROBLEMS: SANDBOX | SAMPLING | {"tasks/core/corpus.py", "tasks/core/config.py"},
    Stage.PRETRAIN: SANDBOX | SAMPLING | PROBLEMS | {"tasks/core/samplestore.py", "tasks/core/config.py"},
    Stage.FINETUNE: SANDBOX | SAMPLING | {"tasks/core/samplestore.py", "tasks/core/config.py"},
    Stage.SAMPLE: SANDBOX | {"tasks/core/corpus.py", "tasks/core/modeling.py", "tasks/core/config.py"},
    Stage.FILTER: {"tasks/core/corpus.py", "tasks/core/clustering.py", "tasks/core/config.py"},
    Stage.CLUSTER: {"tasks/core/corpus.py", "tasks/core/metrics.py", "tasks/core/config.py"},
    Stage.EVALUATE: {"tasks/core/corpus.py", "tasks/core/modeling.py", "tasks/core/config.py"},
    Stage.RL: {"tasks/core/corpus.py", "tasks/core/clustering.py", "tasks/core/config.py"},
    Stage.SFT_CONTINUE: SANDBOX | SAMPLING | {"tasks/core/samplestore.py", "tasks/core/config.py"},
    Stage.SELECT: {"tasks/core/corpus.py", "tasks/core/modeling.py", "tasks/core/config.py"},
    Stage.CURVE: {"tasks/core/corpus.py", "tasks/core/modeling.py", "tasks/core/config.py"},
    Stage.REPORT: {"tasks/core/corpus.py", "tasks/core/config.py"},
}


@pytest.fixture(autouse=True)
def _fresh_caches():
    fp._fingerprint.cache_clear()
    fp._dependencies.cache_clear()
    yield
    fp._fingerprint.cache_clear()
    fp._dependencies.cache_clear()


def files_of(entry: str, root: Path | None = None) -> set[str]:
    return set(fp.fingerprint(entry, root).files)


@pytest.mark.parametrize("stage", list(ENTRIES))
def test_each_stage_fingerprints_what_it_runs_and_nothing_unrelated(stage):
    files = files_of(ENTRIES[stage])
    assert EVERY_STAGE | MUST[stage] <= files, sorted(EVERY_STAGE | MUST[stage] - files)
    assert not files & MUST_NOT[stage], sorted(files & MUST_NOT[stage])
    # the Prefect layer (tasks/*.py) and flows/ never compute anything a key must cover
    assert all(f.startswith("tasks/core/") or f == "tasks/__init__.py" for f in files)


def test_every_file_in_a_fingerprint_is_a_real_source_file():
    for entry in ENTRIES.values():
        for rel in files_of(entry):
            assert (fp.REPO_ROOT / rel).is_file() and rel.endswith(".py")


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A byte-for-byte copy of the project's packages, to edit."""
    root = tmp_path_factory.mktemp("tree")
    for package in fp.PROJECT_PACKAGES:
        shutil.copytree(fp.REPO_ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    return root


STATEMENT = b"\n_EDITED_BY_TEST_CACHE_KEYS = 1\n"


def edited(tree: Path, rel: str, rewalk: bool = True, text: bytes = STATEMENT):
    """Context: ``rel`` in ``tree`` with ``text`` appended (a statement unless told; then
    restored). Digests are recomputed; with ``rewalk`` the import graph is walked again too (an
    assignment changes no import, so keeping the graph walked over the unedited copy gives the
    same files)."""

    def clear():
        fp._fingerprint.cache_clear()
        if rewalk:
            fp._dependencies.cache_clear()

    class _Edit:
        def __enter__(self):
            self.path, self.before = tree / rel, (tree / rel).read_bytes()
            self.path.write_bytes(self.before + text)
            clear()

        def __exit__(self, *exc):
            self.path.write_bytes(self.before)
            clear()

    return _Edit()


def test_copy_fingerprints_like_the_repository(tree):
    for entry in ENTRIES.values():
        assert fp.fingerprint(entry, tree) == fp.fingerprint(entry)


def test_editing_any_imported_file_changes_exactly_the_stages_that_import_it(tree):
    graphs = {stage: files_of(entry, tree) for stage, entry in ENTRIES.items()}
    before = {stage: fp.fingerprint(entry, tree).digest for stage, entry in ENTRIES.items()}
    for rel in sorted(set().union(*graphs.values())):
        with edited(tree, rel, rewalk=False):
            after = {stage: fp.fingerprint(entry, tree).digest for stage, entry in ENTRIES.items()}
        changed = {stage for stage in ENTRIES if after[stage] != before[stage]}
        assert changed == {stage for stage, files in graphs.items() if rel in files}, rel


def stand_in(plan) -> Manifest:
    return Manifest(
        stage=plan.stage,
        key=plan.key,
        path=str(plan.dir),
        config={},
        code_version=plan.code_version,
        created_at="",
    )


def pipeline_keys() -> dict[str, str]:
    """Every stage's content address, each planned from its real declared inputs (the classes the
    flows build) on its upstream's stand-in manifest, wired as ``flows.pipeline`` wires them: the
    report compares three models, each with two evaluations, and lists every stage."""
    from tasks.core.config import load_profile
    from tasks.core.stages.cluster import ClusterInputs
    from tasks.core.stages.evaluate import EvaluateInputs
    from tasks.core.stages.filter import FilterInputs
    from tasks.core.stages.finetune import FinetuneInputs
    from tasks.core.stages.pretrain import PretrainInputs
    from tasks.core.stages.problems import ProblemsInputs
    from tasks.core.stages.report import Contender, ReportInputs, ReportSettings
    from tasks.core.stages.rl import RLInputs
    from tasks.core.stages.sample import SampleInputs
    from tasks.core.stages.select import SelectInputs
    from tasks.core.stages.sft_continue import SFTContinueInputs

    cfg = load_profile("smoke")
    root, splits = "/nonexistent-run", cfg.problems.eval_splits

    def run(inputs) -> Manifest:
        return stand_in(inputs.plan(root))

    problems = run(ProblemsInputs(cfg.problems))
    pretrain = run(PretrainInputs(cfg.pretrain))
    finetune = run(FinetuneInputs(cfg.finetune, "train", "valid", pretrain, problems))
    out = {"problems": problems, "pretrain": pretrain, "finetune": finetune}
    out["rl"] = rl = run(RLInputs(cfg.rl, cfg.judge, "rl", finetune, problems))
    out["sft-continue"] = run(SFTContinueInputs(cfg.finetune, "train", "valid", finetune, rl, problems))
    contenders = []
    for label, model in (("sft", finetune), ("sft-continue", out["sft-continue"]), ("rl", rl)):
        evaluations = {}
        for t in (0.0, 0.8):
            sample_cfg = cfg.sample.model_copy(
                update={"sampling": cfg.sample.sampling.model_copy(update={"temperature": t})}
            )
            samples = run(SampleInputs(sample_cfg, splits, model, problems))
            filtered = run(FilterInputs(cfg.judge, splits, samples, problems))
            clusters = run(ClusterInputs(cfg.cluster, cfg.judge, splits, samples, filtered, problems))
            ev = run(
                EvaluateInputs(
                    cfg.evaluate, cfg.judge, f"{label} T={t:g}", splits, samples, filtered, clusters, problems
                )
            )
            evaluations[t] = ev
            out |= {
                f"sample ({label} T={t:g})": samples,
                f"filter ({label} T={t:g})": filtered,
                f"cluster ({label} T={t:g})": clusters,
                f"evaluate ({label} T={t:g})": ev,
            }
        out[f"select ({label})"] = run(SelectInputs(label, "valid", 5, tuple(evaluations.items())))
        contenders.append(
            Contender(
                label=label,
                pass1=evaluations[0.0],
                wide=evaluations[0.8],
                pass1_temperature=0.0,
                wide_temperature=0.8,
            )
        )
    stages = dict(out)
    out["report"] = run(ReportInputs(ReportSettings(), splits, tuple(contenders), problems, stages))
    return {name: m.key for name, m in out.items()}


def test_changing_only_sft_continue_rekeys_its_evaluations_its_select_and_the_report(tree, monkeypatch):
    """The report reads six evaluations (three models at two temperatures) and select reads one
    per grid temperature: each is an upstream in its own role, so no change hides behind another
    manifest of the same stage (keyed by stage, the report saw only RL's last evaluation)."""
    changed = keys_changed_by(tree, "tasks/core/stages/sft_continue.py", monkeypatch)
    assert changed == {"sft-continue", "select (sft-continue)", "report"} | {
        f"{s} (sft-continue T={t})" for s in ("sample", "filter", "cluster", "evaluate") for t in ("0", "0.8")
    }


def test_report_and_select_record_every_upstream_in_its_role():
    from tasks.core.manifest import upstream_refs
    from tasks.core.stages.report import Contender, ReportInputs, ReportSettings
    from tasks.core.stages.select import SelectInputs

    def ev(key: str) -> Manifest:
        return Manifest(stage="evaluate", key=key, path="/x", config={}, code_version="c", created_at="")

    grid = ((0.0, ev("a")), (0.8, ev("b")))
    select = SelectInputs("rl", "valid", 5, grid)
    assert [(r, m.key) for r, m in select.upstream()] == [("grid[0][1]", "a"), ("grid[1][1]", "b")]
    assert select.key_config()["grid"] == [[0.0, "@grid[0][1]"], [0.8, "@grid[1][1]"]]
    swapped = SelectInputs("rl", "valid", 5, ((0.0, ev("b")), (0.8, ev("a"))))
    assert select.plan("/r").key != swapped.plan("/r").key  # which temperature had which evaluation
    contenders = tuple(
        Contender(label=m, pass1=ev(m + "1"), wide=ev(m + "w"), pass1_temperature=0, wide_temperature=1)
        for m in ("sft", "rl")
    )
    report = ReportInputs(ReportSettings(), ("t",), contenders, ev("p"), {"x (y)": ev("z")})
    refs = upstream_refs(report.upstream())
    assert [r.role for r in refs] == [
        "contenders[0].pass1",
        "contenders[0].wide",
        "contenders[1].pass1",
        "contenders[1].wide",
        "problems",
        "stages[x (y)]",
    ]


def keys_changed_by(tree: Path, rel: str, monkeypatch) -> set[str]:
    monkeypatch.setattr(fp, "REPO_ROOT", tree)  # plan_stage fingerprints the copy
    before = pipeline_keys()
    with edited(tree, rel):
        after = pipeline_keys()
    return {name for name in before if after[name] != before[name]}


def test_editing_the_sandbox_rekeys_filter_cluster_evaluate_rl_not_upstream(tree, monkeypatch):
    for rel in (
        "tasks/core/sandbox/compare.py",
        "tasks/core/sandbox/judge.py",
        "tasks/core/sandbox/server.py",
    ):
        changed = keys_changed_by(tree, rel, monkeypatch)
        untouched = {"problems", "pretrain", "finetune", "sample (sft T=0)", "sample (sft T=0.8)"}
        assert not changed & untouched, (rel, changed & untouched)
        assert {"filter (sft T=0)", "cluster (sft T=0)", "evaluate (sft T=0)", "rl", "report"} <= changed, rel
        assert "sample (rl T=0.8)" in changed  # downstream of RL through its key


def test_editing_the_corpus_rekeys_pretrain_and_everything_downstream(tree, monkeypatch):
    changed = keys_changed_by(tree, "tasks/core/corpus.py", monkeypatch)
    assert changed == set(pipeline_keys()) - {"problems"}


def test_editing_the_problem_code_rekeys_everything_but_pretraining(tree, monkeypatch):
    changed = keys_changed_by(tree, "tasks/core/problems/prompt.py", monkeypatch)
    assert changed == set(pipeline_keys()) - {"pretrain"}


def test_editing_the_hf_backend_rekeys_sampling_not_training(tree, monkeypatch):
    changed = keys_changed_by(tree, "tasks/core/sampling/hf.py", monkeypatch)
    assert not changed & {"problems", "pretrain", "finetune"}
    assert {"sample (sft T=0)", "filter (sft T=0)", "evaluate (sft T=0)", "report"} <= changed


def test_a_comment_or_docstring_edit_rekeys_nothing(tree, monkeypatch):
    path = tree / "tasks/core/io.py"
    original = path.read_bytes()
    function = b'\n\ndef _documented():\n    """A docstring."""\n    return 1\n'
    monkeypatch.setattr(fp, "REPO_ROOT", tree)

    def keys_with(text: bytes) -> dict[str, str]:
        path.write_bytes(text)
        fp._fingerprint.cache_clear()
        return pipeline_keys()

    try:
        before = keys_with(original + function)
        assert (
            keys_with(original + function.replace(b"A docstring.", b"Another, longer docstring.")) == before
        )
        assert keys_with(original + function + b"# a comment\n") == before
        assert keys_with(original.replace(b'"""', b'"""Edited module docstring. ', 1) + function) == before
        assert keys_with(original + function.replace(b"return 1", b"return 2")) != before
    finally:
        path.write_bytes(original)
        fp._fingerprint.cache_clear()


def test_a_statement_edit_of_compare_rekeys_filter_evaluate_rl_report_and_nothing_upstream(tree, monkeypatch):
    changed = keys_changed_by(tree, "tasks/core/sandbox/compare.py", monkeypatch)
    kinds = {name.split(" (")[0] for name in changed}
    assert {"filter", "evaluate", "rl", "report"} <= kinds
    assert not kinds & {"problems", "pretrain", "finetune"}
    assert not {n for n in changed if n.startswith("sample (sft T=")}  # stage 2 samples: upstream of RL


# ------------------------------------------------------------------ the walk's rules, on a toy tree


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_walk_follows_lazy_relative_submodule_dynamic_and_text_imports(tmp_path):
    root = write(
        tmp_path,
        {
            "tasks/__init__.py": "",
            "tasks/pkg/__init__.py": "from .sub import thing\n",
            "tasks/pkg/sub.py": "thing = 1\n",
            "tasks/pkg/mod.py": "from . import sibling\n",
            "tasks/pkg/sibling.py": "",
            "tasks/pkg/shipped.py": "print('runs elsewhere')\n",
            "tasks/pkg/sender.py": "SOURCE = 'shipped.py'\n",
            "tasks/lazy.py": "def f():\n    from tasks.pkg import mod\n    return mod\n",
            "tasks/dyn.py": "import importlib\nM = importlib.import_module('tasks.pkg.sender')\n",
            "tasks/typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import tasks.heavy\n",
            "tasks/heavy.py": "",
            "tasks/entry.py": "import tasks.lazy\nimport tasks.dyn\nimport tasks.typed\n",
        },
    )
    files = files_of("tasks.entry", root)
    assert files == {
        "tasks/__init__.py",
        "tasks/entry.py",
        "tasks/lazy.py",
        "tasks/dyn.py",
        "tasks/typed.py",
        "tasks/pkg/__init__.py",  # package on the path of tasks.pkg.mod
        "tasks/pkg/sub.py",  # imported by the package's __init__
        "tasks/pkg/mod.py",  # `from tasks.pkg import mod`: a submodule
        "tasks/pkg/sibling.py",  # `from . import sibling`
        "tasks/pkg/sender.py",  # importlib.import_module("tasks.pkg.sender")
        "tasks/pkg/shipped.py",  # named as a .py file beside sender.py
    }  # tasks/heavy.py is imported under TYPE_CHECKING only


def test_computed_dynamic_import_is_refused_with_its_location(tmp_path):
    root = write(
        tmp_path,
        {
            "tasks/__init__.py": "",
            "tasks/entry.py": "import importlib\nname = 'x'\nimportlib.import_module(name)\n",
        },
    )
    with pytest.raises(fp.FingerprintError, match=r"entry\.py:3: imports a module by a computed name"):
        fp.fingerprint("tasks.entry", root)


def test_missing_project_module_or_entry_is_a_clear_error(tmp_path):
    root = write(tmp_path, {"tasks/__init__.py": "", "tasks/entry.py": "import tasks.gone\n"})
    with pytest.raises(fp.FingerprintError, match=r"entry\.py:1: imports 'tasks.gone', which is no module"):
        fp.fingerprint("tasks.entry", root)
    with pytest.raises(fp.FingerprintError, match="stage entry module 'tasks.nothing' has no source file"):
        fp.fingerprint("tasks.nothing", root)


def test_plan_stage_takes_a_module_or_its_name():
    from tasks.core.stages import filter as filter_stage

    by_module = plan_stage("/tmp/run", Stage.FILTER, {}, [], filter_stage)
    by_name = plan_stage("/tmp/run", Stage.FILTER, {}, [], "tasks.core.stages.filter")
    assert by_module.key == by_name.key
    assert by_module.code_version == fp.fingerprint(filter_stage).digest

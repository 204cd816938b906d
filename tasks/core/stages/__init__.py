"""Stage bodies: what each pipeline stage computes, given its plan, config and upstream.

Each module ``tasks.core.stages.<stage>`` holds a stage's whole logic: planning its units, the
per-unit step (a sample shard, an execution shard) and finishing (reduce, publish the manifest
last), and the names of the files it publishes. No Prefect here: ``tasks/stages.py`` wraps these
functions in cached, retryable tasks and ``flows/`` wires them together.

A stage's code version is the fingerprint of its module (:mod:`tasks.core.fingerprint`): every
project module it imports, transitively. Stage modules import their config classes under
``if TYPE_CHECKING:`` (a config reaches the content address through its dumped values), so
editing ``config.py`` alone re-runs nothing whose configuration did not change.

:class:`Stage` names the stages, in pipeline order; the names are the directories under a run.
"""

from enum import StrEnum


class Stage(StrEnum):
    PROBLEMS = "problems"
    PRETRAIN = "pretrain"
    FINETUNE = "finetune"
    SAMPLE = "sample"
    FILTER = "filter"
    CLUSTER = "cluster"
    EVALUATE = "evaluate"
    RL = "rl"
    SFT_CONTINUE = "sft-continue"
    ORACLE_SFT = "oracle-sft"
    SELECT = "select"
    CURVE = "curve"
    REPORT = "report"


STAGES: tuple[Stage, ...] = tuple(Stage)
REPORT_FILE = "report.md"  # each stage's human-readable report, beside its Parquet files
PER_SAMPLE_FILE = "per_sample.parquet"  # the evaluation's per-sample verdicts (evaluate, read by rl)

"""Validated configuration: one frozen pydantic model per stage, named profiles, overrides.

Contract: :func:`load_profile` reads ``data/profiles/<name>.toml`` (over the profile its
``extends`` key names, if any, deep-merged), deep-merges overrides
(``{"sample": {"sampling": {"n": 4}}}`` or dotted ``"sample.sampling.n=4"`` strings) and
validates once; every model forbids unknown fields, so a typo fails with the field named.
:class:`ConfigError` carries a one-line message naming the field and the fix. Everything past
this boundary receives these frozen models (or their explicit fields), never raw dicts.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tasks.core.corpus import CorpusSpec
from tasks.core.device import DeviceConfig
from tasks.core.hparams import ModelSpec, PPOParams, TrainHParams
from tasks.core.rl.expert_iteration import ExpertIterationParams
from tasks.core.rl.grpo import GRPOParams
from tasks.core.sampling import SamplingParams

PROFILES_DIR = Path(__file__).resolve().parents[2] / "data" / "profiles"


class ConfigError(ValueError):
    """A one-line, user-facing configuration error (the CLI exits with status 2)."""


class _Cfg(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ProblemsConfig(_Cfg):
    """Which problems every stage reads. ``source``: ``bundled``, ``humaneval``,
    ``code_contests:<dir>`` or a JSONL/Parquet path (see ``tasks.core.problems.loaders``).
    Roles: ``sft_split`` trains stage 2, ``rl_split`` trains stage 6, ``valid_split`` is the only
    split any choice may be made on, ``eval_splits`` are computed once for the report (the
    bundled splits and what each measures: ``tasks.core.problems.splits``). ``oracle_split``
    (optional): the RL split's problems *with* reference solutions; when set, the pipeline trains
    the oracle-SFT upper reference on it (the bundled ``rl_oracle``; None: no oracle).
    ``rl_valid_split`` (optional): where ``alphacode study`` chooses RL settings (the bundled
    ``valid_rl``: RL-cell problems, one per family; None: ``valid_split``)."""

    source: str = "bundled"
    seed: int = 0
    per_family: int = Field(default=40, gt=0)
    sft_split: str = "train"
    rl_split: str = "rl"
    valid_split: str = "valid"
    eval_splits: tuple[str, ...] = ("test_instances", "test_rl_cells", "test_families")
    oracle_split: str | None = None
    rl_valid_split: str | None = None
    max_eval_problems: int | None = Field(default=None, gt=0, description="per eval split")
    max_rl_problems: int | None = Field(default=None, gt=0)
    max_valid_problems: int | None = Field(default=None, gt=0)


class PretrainConfig(_Cfg):
    """Stage 1. ``model.source = "pretrained"`` with ``train.max_steps = 0`` trains nothing: the
    model directory (with its own tokenizer) is published as stage 1's output and stage 2
    fine-tunes it; with ``max_steps > 0`` pretraining continues on the corpus."""

    corpus: CorpusSpec = CorpusSpec()
    model: ModelSpec = ModelSpec()
    train: TrainHParams
    device: DeviceConfig = DeviceConfig()  # the profile's [device] unless set here

    @model_validator(mode="after")
    def _zero_steps_needs_a_pretrained_model(self) -> PretrainConfig:
        if self.train.max_steps == 0 and self.model.source != "pretrained":
            raise ValueError(
                "pretrain.train.max_steps=0 publishes a pretrained model untrained, but "
                "pretrain.model.source is 'scratch' (random weights): set pretrain.model.source="
                "'pretrained' and pretrain.model.path, or train at least one step"
            )
        return self

    @property
    def publishes_pretrained(self) -> bool:
        """Stage 1 publishes ``model.path`` as is (no training step)."""
        return self.model.source == "pretrained" and self.train.max_steps == 0


class FinetuneConfig(_Cfg):
    train: TrainHParams
    max_problems: int | None = Field(default=None, gt=0)
    device: DeviceConfig = DeviceConfig()  # the profile's [device] unless set here

    @field_validator("train")
    @classmethod
    def _trains(cls, v: TrainHParams) -> TrainHParams:
        if v.max_steps == 0:
            raise ValueError("finetune.train.max_steps=0: stage 2 must train at least one step; raise it")
        return v


class SampleConfig(_Cfg):
    sampling: SamplingParams
    randomize_metadata: bool = False


class JudgeConfig(_Cfg):
    """Sandbox settings. ``time_limit_s``/``memory_mb`` apply to problems without their own
    limits; a problem's own limits go through ``tasks.core.jobs.LimitPolicy``: CPU s =
    min(time_cap_s, max(time_floor_s, time_factor x limit)) for Python, memory = min(cap, limit).
    ``workers`` and ``backend`` choose how fast and in which sandbox the same verdicts are
    computed: they are no part of any stage key (:mod:`tasks.core.stages.base`)."""

    backend: Literal["bwrap", "docker"] = Field(
        default="bwrap", json_schema_extra={"keyed": False}, description="same verdicts on both: unkeyed"
    )
    workers: int = Field(
        default=2, gt=0, json_schema_extra={"keyed": False}, description="speed only: unkeyed"
    )
    time_limit_s: float = Field(default=2.0, gt=0)
    memory_mb: int = Field(default=256, gt=16)
    programs_per_shard: int = Field(default=256, gt=0)
    time_floor_s: float = Field(default=1.0, gt=0)
    time_factor: float = Field(default=1.5, gt=0)
    time_cap_s: float = Field(default=10.0, gt=0)
    memory_cap_mb: int = Field(default=1024, gt=16)


class ClusterConfig(_Cfg):
    num_inputs: int = Field(default=50, ge=1, description="generated test inputs per problem")
    seed: int = 0
    n_submissions: int = Field(default=10, ge=1)
    method: Literal["exact", "dbscan", "agglomerative"] = "exact"


class _RLCommon(_Cfg):
    """What every RL algorithm shares. With ``difficulty_band`` = [lo, hi] the stage-2 model first
    samples every RL problem ``difficulty_samples`` times at the temperature the algorithm samples
    at (its ``temperature``; stages 3-5 and the evaluation on the RL split, cached like the
    others) and RL trains only on the problems whose hidden-test pass rate (what the reward
    scores) lies in the band (:mod:`tasks.core.rl.difficulty`); the manifest records the counts. An empty list (``difficulty_band = []``, TOML has no null) means no band."""

    SECTION: ClassVar[str]  # the field holding the algorithm's own knobs
    difficulty_band: tuple[float, float] | None = None
    difficulty_samples: int = Field(default=8, ge=1)
    device: DeviceConfig = DeviceConfig()  # the profile's [device] unless set here

    @property
    def params(self) -> Any:
        """The chosen algorithm's knobs (what its trainer takes)."""
        return getattr(self, self.SECTION)

    @property
    def total_steps(self) -> int:
        """Progress units of the algorithm: optimizer steps (rounds for expert iteration)."""
        return self.params.steps

    @field_validator("difficulty_band", mode="before")
    @classmethod
    def _no_band(cls, v: Any) -> Any:
        return None if isinstance(v, list | tuple) and len(v) == 0 else v

    @field_validator("difficulty_band")
    @classmethod
    def _band(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not 0 <= v[0] <= v[1] <= 1:
            raise ValueError(
                f"rl.difficulty_band {list(v)}: give [lo, hi] with 0 <= lo <= hi <= 1, e.g. [0.1, 0.9]"
            )
        return v


class GRPOConfig(_RLCommon):
    SECTION: ClassVar[str] = "grpo"
    algorithm: Literal["grpo"] = "grpo"
    grpo: GRPOParams = GRPOParams()


class PPOConfig(_RLCommon):
    SECTION: ClassVar[str] = "ppo"
    algorithm: Literal["ppo"] = "ppo"
    ppo: PPOParams = PPOParams()


class ExpertIterationConfig(_RLCommon):
    SECTION: ClassVar[str] = "expert_iteration"
    algorithm: Literal["expert-iteration"] = "expert-iteration"
    expert_iteration: ExpertIterationParams = ExpertIterationParams()

    @property
    def total_steps(self) -> int:
        """Progress units: rounds."""
        return self.expert_iteration.rounds


RL_VARIANTS: dict[str, type[_RLCommon]] = {
    "grpo": GRPOConfig,
    "ppo": PPOConfig,
    "expert-iteration": ExpertIterationConfig,
}
RL_SECTIONS = {algorithm: variant.SECTION for algorithm, variant in RL_VARIANTS.items()}
RLConfig = Annotated[GRPOConfig | PPOConfig | ExpertIterationConfig, Field(discriminator="algorithm")]
"""The RL stage's settings: one model per ``algorithm`` holding that algorithm's knobs only, so
tuning one algorithm never re-keys a run of another (:func:`rl_config` reads a profile's
``[rl]`` table into it)."""


def rl_config(raw: Any) -> Any:
    """A profile's ``[rl]`` table as the chosen algorithm's config: ``algorithm`` defaults to
    ``grpo``; the sections of the other algorithms (``[rl.ppo]``... a profile may carry settings
    for every algorithm, as the RL study switches between them) are validated, so a typo still
    fails, then dropped: they are no part of this run's config or key."""
    if not isinstance(raw, dict):
        return raw
    algorithm = raw.get("algorithm", "grpo")
    if algorithm not in RL_VARIANTS:
        return raw  # the union reports the unknown tag with the choices
    out = dict(raw, algorithm=algorithm)
    for other, section in RL_SECTIONS.items():
        if other != algorithm and section in out:
            params = RL_VARIANTS[other].model_fields[section].annotation
            try:
                params.model_validate(out.pop(section))
            except ValidationError as err:
                first = err.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise ValueError(
                    f"rl.{section}.{where}: {first['msg']} (section unused: algorithm is {algorithm!r})"
                ) from None
    return out


class SelectConfig(_Cfg):
    """How each compared model's sampling temperature is chosen, on the valid split only.

    Every model of the report (stage 2, SFT-continue, RL) is sampled ``valid_n`` times per
    ``valid`` problem at each temperature of ``temperatures`` (``0`` = greedy) and scored on the
    hidden tests; the temperature with the best valid pass@1 is the one its test pass@1 is
    reported at, the one with the best valid pass@10 the one its test pass@k curve and 10@k are
    reported at (ties: the earlier in the grid). An empty grid chooses nothing: every model is
    reported at ``sample.sampling.temperature``."""

    temperatures: tuple[float, ...] = ()
    valid_n: int = Field(default=10, ge=1, description="samples per valid problem at each temperature")

    @field_validator("temperatures")
    @classmethod
    def _grid(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(t < 0 for t in v) or len(set(v)) != len(v):
            raise ValueError(f"select.temperatures {list(v)}: give distinct temperatures >= 0 (0 = greedy)")
        return v


class EvalConfig(_Cfg):
    ks: tuple[int, ...] = (1, 5, 10)
    n_at_k: tuple[int, ...] = (1, 5, 10)
    n_submissions: int = 10
    bootstrap: int = Field(default=1000, ge=100)
    seed: int = 0


class RunnerConfig(_Cfg):
    """Where the shards of stages 3-5 (sampling, execution) run; never part of a stage key
    (every runner computes the same shards). ``sequential``: one after another in the flow's
    process. ``thread``: ``workers`` threads in that process. ``dask``/``ray``: a local cluster
    of ``workers`` processes, or the existing cluster at ``address``."""

    kind: Literal["sequential", "thread", "dask", "ray"] = "sequential"
    workers: int = Field(
        default=2, gt=0, description="threads (thread) or local worker processes (dask, ray)"
    )
    address: str | None = Field(default=None, description="existing Dask scheduler / Ray cluster address")
    threads_per_worker: int = Field(default=1, gt=0, description="dask only: threads per worker process")
    gpus: float = Field(
        default=0.0,
        ge=0,
        description="ray only: GPUs of each sampling engine (a long-lived Ray actor per this many "
        "GPUs of the cluster runs a sampling stage's shards; tasks/engines.py); 0 = CPU",
    )

    @model_validator(mode="after")
    def _consistent(self) -> RunnerConfig:
        given = self.model_fields_set
        if self.address is not None:
            if self.kind not in ("dask", "ray"):
                raise ValueError(
                    f"runner.address only applies to runner.kind 'dask' or 'ray' (kind is {self.kind!r}): "
                    "set runner.kind or drop runner.address"
                )
            if not self.address.strip() or self.address != self.address.strip():
                raise ValueError(
                    f"runner.address {self.address!r} is blank or has surrounding spaces: "
                    "give e.g. tcp://scheduler:8786 (dask) or ray://head:10001 (ray)"
                )
            if given & {"workers", "threads_per_worker"}:
                raise ValueError(
                    "runner.workers/threads_per_worker size a local cluster; with runner.address the "
                    "existing cluster's workers are used: drop one of them"
                )
        if self.kind == "sequential" and "workers" in given:
            raise ValueError(
                "runner.workers has no effect with runner.kind 'sequential': "
                "set runner.kind to thread, dask or ray, or drop runner.workers"
            )
        if self.kind != "ray" and self.gpus:
            raise ValueError(
                f"runner.gpus only applies to runner.kind 'ray' (kind is {self.kind!r}): drop it or set "
                "runner.kind=ray (for Dask, start one worker per GPU with CUDA_VISIBLE_DEVICES set)"
            )
        if self.kind != "dask" and "threads_per_worker" in given:
            raise ValueError(
                f"runner.threads_per_worker only applies to runner.kind 'dask' (kind is {self.kind!r}): "
                "drop it or set runner.kind=dask"
            )
        return self


# Where the top-level [device] is copied to (unless that section sets its own): the stages
# that run a model. Sampling's lives in its SamplingParams, so that shards carry it.
DEVICE_SECTIONS: tuple[tuple[str, ...], ...] = (
    ("pretrain",),
    ("finetune",),
    ("sample", "sampling"),
    ("rl",),
)


class PipelineConfig(_Cfg):
    """The whole run. ``device`` (top-level ``[device]``, :class:`DeviceConfig`) is the one
    device policy: it is copied into every section of :data:`DEVICE_SECTIONS` that does not
    set its own ``device`` (so it is part of those stages' keys, like any config value)."""

    profile: str = "custom"
    device: DeviceConfig = DeviceConfig()
    problems: ProblemsConfig = ProblemsConfig()
    pretrain: PretrainConfig
    finetune: FinetuneConfig
    sample: SampleConfig
    judge: JudgeConfig = JudgeConfig()
    cluster: ClusterConfig = ClusterConfig()
    rl: RLConfig = GRPOConfig()
    select: SelectConfig = SelectConfig()
    evaluate: EvalConfig = EvalConfig()
    runner: RunnerConfig = RunnerConfig()

    @field_validator("rl", mode="before")
    @classmethod
    def _rl(cls, v: Any) -> Any:
        return rl_config(v)

    @model_validator(mode="before")
    @classmethod
    def _spread_device(cls, raw: Any) -> Any:
        if not isinstance(raw, dict) or "device" not in raw:
            return raw
        raw = dict(raw)
        device = raw["device"]
        for path in DEVICE_SECTIONS:
            raw = _set_default(raw, path, device)
        return raw


def _set_default(raw: dict[str, Any], path: tuple[str, ...], device: Any) -> dict[str, Any]:
    """``raw`` with ``device`` at ``path + ("device",)`` unless a value is there already."""
    head, rest = path[0], path[1:]
    if head not in raw and rest:
        return raw  # a required section: let pydantic say it is missing
    section = raw.get(head, {})
    if isinstance(section, BaseModel):
        section = section.model_dump(exclude_unset=True)
    if not isinstance(section, dict):
        return raw  # a type error pydantic reports with the field named
    if rest:
        return {**raw, head: _set_default(section, rest, device)}
    return {**raw, head: {"device": device, **section}}


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def load_profile(name: str, overrides: dict[str, Any] | Iterable[str] | None = None) -> PipelineConfig:
    """Profile ``name`` with ``overrides`` merged in, validated. A profile whose top-level key
    ``extends = "other"`` is deep-merged over profile ``other`` (itself possibly extending
    another; tables merge key by key, any other value, lists included, replaces the base's)."""
    raw = _profile_raw(name, ())
    raw["profile"] = name
    return validate_config(deep_merge(raw, normalise_overrides(overrides)))


def profile_extends(name: str) -> str | None:
    """The profile ``name`` extends (its ``extends`` key), or None."""
    return _profile_toml(name, ()).get("extends")


def _profile_toml(name: str, chain: tuple[str, ...]) -> dict[str, Any]:
    path = PROFILES_DIR / f"{name}.toml"
    if not path.is_file():
        via = f" (extended by {chain[-1]!r})" if chain else ""
        raise ConfigError(
            f"unknown profile {name!r}{via}: choose one of {', '.join(available_profiles())} "
            f"(profiles live in {PROFILES_DIR})"
        )
    raw = tomllib.loads(path.read_text())
    base = raw.get("extends")
    if base is not None and (not isinstance(base, str) or not base):
        raise ConfigError(
            f'profile {name!r}: extends = {base!r} must name a profile, e.g. extends = "default"'
        )
    return raw


def _profile_raw(name: str, chain: tuple[str, ...]) -> dict[str, Any]:
    raw = _profile_toml(name, chain)
    base = raw.pop("extends", None)
    if base is None:
        return raw
    if base in (*chain, name):
        cycle = " -> ".join((*chain, name, base))
        raise ConfigError(f"profile {name!r}: extends forms a cycle ({cycle}): remove one extends")
    return deep_merge(_profile_raw(base, (*chain, name)), raw)


def validate_config(raw: dict[str, Any]) -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err)) from None


def describe_validation_error(err: ValidationError) -> str:
    first = err.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or "<config>"
    more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
    if first["type"] == "extra_forbidden":
        return f"config field {field!r} is not a known setting{more}: remove it or fix its spelling"
    return f"config field {field!r}: {first['msg']} (got {first.get('input')!r}){more}: fix that value"


def normalise_overrides(overrides: dict[str, Any] | Iterable[str] | None) -> dict[str, Any]:
    if overrides is None:
        return {}
    if isinstance(overrides, dict):
        return overrides
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not KEY=VALUE: write e.g. sample.sampling.n=8")
        dotted, value = item.split("=", 1)
        nested = deep_merge(nested, _nest(dotted.strip().split("."), _parse_value(value)))
    return nested


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _nest(keys: list[str], value: Any) -> dict[str, Any]:
    out: Any = value
    for key in reversed(keys):
        out = {key: out}
    return out


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def preflight(cfg: PipelineConfig) -> None:
    """Check every path the config names before anything runs (nothing is computed or lost)."""
    corpus = cfg.pretrain.corpus
    if corpus.kind != "stdlib":
        if not corpus.path:
            raise ConfigError(
                f"config field 'pretrain.corpus.path' is required for corpus kind {corpus.kind!r}: set it"
            )
        if not Path(corpus.path).exists():
            raise ConfigError(
                f"config field 'pretrain.corpus.path': {corpus.path!r} does not exist: point it at your corpus"
            )
    model = cfg.pretrain.model
    if model.source == "pretrained" and not (model.path and Path(model.path).is_dir()):
        raise ConfigError(
            f"config field 'pretrain.model.path': {model.path!r} is not a directory: give a local Hugging Face model dir"
        )
    source = cfg.problems.source
    if source.startswith("code_contests:") and not Path(source.split(":", 1)[1]).is_dir():
        raise ConfigError(
            f"config field 'problems.source': directory {source.split(':', 1)[1]!r} does not exist"
        )
    if source not in ("bundled", "humaneval") and ":" not in source and not Path(source).exists():
        raise ConfigError(
            f"config field 'problems.source': {source!r} is neither bundled, humaneval nor a file"
        )

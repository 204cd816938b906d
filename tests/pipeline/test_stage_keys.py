"""What a stage key holds: the chosen RL algorithm's knobs only, no speed settings, and every
input a stage declares (tested through the stage inputs the flows build)."""

from __future__ import annotations

import pytest

from tasks.core.config import (
    ConfigError,
    ExpertIterationConfig,
    GRPOConfig,
    JudgeConfig,
    PPOConfig,
    load_profile,
)
from tasks.core.manifest import Manifest
from tasks.core.stages.filter import FilterInputs
from tasks.core.stages.rl import RLInputs


def stand_in(stage: str, key: str) -> Manifest:
    return Manifest(
        stage=stage, key=key, path=f"/r/{stage}/{key}", config={}, code_version="c", created_at=""
    )


FINETUNED, PROBLEMS = stand_in("finetune", "f"), stand_in("problems", "p")


def rl_key(overrides: list[str]) -> str:
    cfg = load_profile("default", overrides)
    return RLInputs(cfg.rl, cfg.judge, "rl", FINETUNED, PROBLEMS).plan("/r").key


def test_each_algorithm_has_its_own_config_with_only_its_knobs():
    assert isinstance(load_profile("default").rl, ExpertIterationConfig)
    assert isinstance(load_profile("default", ["rl.algorithm=grpo"]).rl, GRPOConfig)
    assert isinstance(load_profile("default", ["rl.algorithm=ppo"]).rl, PPOConfig)
    assert isinstance(load_profile("default", {"rl": {"difficulty_band": []}}).rl, ExpertIterationConfig)
    rl = load_profile("default").rl.model_dump()
    assert "grpo" not in rl and "ppo" not in rl and "expert_iteration" in rl


def test_an_rl_table_without_algorithm_is_grpo():
    from tasks.core.config import PipelineConfig

    raw = load_profile("smoke").model_dump(mode="json", exclude={"runner", "rl"})
    assert PipelineConfig.model_validate(raw | {"rl": {"grpo": {"steps": 3}}}).rl == GRPOConfig(
        grpo={"steps": 3}
    )
    assert PipelineConfig.model_validate(raw).rl == GRPOConfig()


def test_changing_a_grpo_knob_leaves_an_expert_iteration_key_alone():
    base = rl_key([])
    assert rl_key(["rl.grpo.lr=0.001", "rl.grpo.steps=99", "rl.ppo.steps=7"]) == base
    assert rl_key(["rl.expert_iteration.lr=0.001"]) != base
    assert rl_key(["rl.algorithm=grpo"]) != rl_key(["rl.algorithm=grpo", "rl.grpo.lr=0.001"])


def test_unused_algorithm_sections_are_still_validated():
    with pytest.raises(ConfigError, match=r"rl\.grpo\.lrr.*unused: algorithm is 'expert-iteration'"):
        load_profile("default", ["rl.grpo.lrr=1"])
    with pytest.raises(ConfigError, match="rl"):
        load_profile("default", ["rl.algorithm=sft"])


def filter_key(**judge) -> str:
    inputs = FilterInputs(JudgeConfig(**judge), ("valid",), stand_in("sample", "s"), PROBLEMS)
    return inputs.plan("/r").key


def test_judge_speed_settings_are_no_part_of_a_key_and_limits_are():
    base = filter_key()
    assert filter_key(workers=7) == base
    assert filter_key(backend="docker") == base
    assert filter_key(time_limit_s=3.0) != base
    assert filter_key(memory_mb=512) != base
    assert filter_key(programs_per_shard=7) != base  # layout of the stage directory


def test_unkeyed_fields_are_exactly_the_declared_speed_settings():
    from tasks.core.config import PipelineConfig
    from tasks.core.stages.base import UNKEYED

    def unkeyed(model: type, prefix: str = "") -> set[str]:
        out = set()
        for name, field in model.model_fields.items():
            extra = field.json_schema_extra
            if isinstance(extra, dict) and extra.get(UNKEYED) is False:
                out.add(prefix + name)
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
                out |= unkeyed(annotation, f"{prefix}{name}.")
        return out

    assert unkeyed(PipelineConfig) == {"judge.workers", "judge.backend"}


def test_a_stage_key_changes_with_each_declared_input_and_its_role():
    cfg = load_profile("smoke")
    a = RLInputs(cfg.rl, cfg.judge, "rl", FINETUNED, PROBLEMS)
    assert [r for r, _ in a.upstream()] == ["finetuned", "problems"]
    other_model = RLInputs(cfg.rl, cfg.judge, "rl", stand_in("finetune", "g"), PROBLEMS)
    other_split = RLInputs(cfg.rl, cfg.judge, "valid", FINETUNED, PROBLEMS)
    with_band = RLInputs(cfg.rl, cfg.judge, "rl", FINETUNED, PROBLEMS, stand_in("filter", "d"))
    keys = {x.plan("/r").key for x in (a, other_model, other_split, with_band)}
    assert len(keys) == 4
    assert with_band.plan("/r").upstream[-1].role == "difficulty"

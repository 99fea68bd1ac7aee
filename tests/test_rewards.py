"""The reward ladder (DESIGN.md) and its configuration."""

from __future__ import annotations

import msgspec
import pytest

from halo_forge.verify.rewards import Outcome, RewardLadder, reward


def test_default_ladder_values():
    assert reward(Outcome(has_code=False)) == 0.0
    assert reward(Outcome(has_code=True, compiled=False)) == 0.0
    assert reward(Outcome(has_code=True, compiled=True, warnings=True)) == 0.3
    assert reward(Outcome(has_code=True, compiled=True)) == 0.5
    assert reward(Outcome(has_code=True, compiled=True, ran_ok=True)) == 0.7
    assert reward(Outcome(has_code=True, compiled=True, tests_passed=4, tests_total=4)) == 1.0
    assert reward(Outcome(has_code=True, compiled=True, tests_passed=1, tests_total=4)) == pytest.approx(0.625)
    assert reward(Outcome(has_code=True, compiled=True, tests_passed=0, tests_total=4)) == 0.5
    assert reward(Outcome(has_code=True, compiled=True, warnings=True, tests_passed=0, tests_total=4)) == 0.3


def test_ladder_is_monotone_in_what_the_program_achieved():
    steps = [
        Outcome(has_code=False),
        Outcome(has_code=True, compiled=True, warnings=True),
        Outcome(has_code=True, compiled=True),
        Outcome(has_code=True, compiled=True, ran_ok=True),
    ]
    values = [reward(o) for o in steps]
    assert values == sorted(values) and len(set(values)) == len(values)
    fractions = [reward(Outcome(has_code=True, compiled=True, tests_passed=k, tests_total=5)) for k in range(6)]
    assert fractions == sorted(fractions)
    # passing tests is worth more than only compiling
    assert fractions[1] > reward(Outcome(has_code=True, compiled=True))


def test_guard_caps_at_compiles():
    full = Outcome(has_code=True, compiled=True, tests_passed=3, tests_total=3, guarded=True)
    assert reward(full) == 0.5
    assert reward(msgspec.structs.replace(full, warnings=True)) == 0.3
    assert reward(Outcome(has_code=True, compiled=True, ran_ok=True, guarded=True)) == 0.5


def test_configurable_ladder():
    ladder = RewardLadder(compiled=0.2, compiled_with_warnings=0.1, ran=0.4, tests_base=0.2, tests_scale=0.8)
    assert reward(Outcome(has_code=True, compiled=True), ladder) == 0.2
    assert reward(Outcome(has_code=True, compiled=True, tests_passed=2, tests_total=2), ladder) == 1.0
    assert msgspec.convert({"ran": 0.9}, RewardLadder).ran == 0.9


@pytest.mark.parametrize(
    "fields",
    [{"compiled": 0.8, "ran": 0.7}, {"compiled_with_warnings": 0.6}, {"tests_scale": 0.0}],
)
def test_inconsistent_ladder_rejected(fields):
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert(fields, RewardLadder)


def test_unknown_ladder_key_rejected():
    with pytest.raises(msgspec.ValidationError, match="pased"):
        msgspec.convert({"pased": 1.0}, RewardLadder)

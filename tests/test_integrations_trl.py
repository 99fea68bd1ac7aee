"""halo_forge.integrations.trl: the reward function inside TRL's GRPOTrainer (two real steps on
CPU with the tiny model), and on its own: conversational completions, dataset columns, hostile
samples beside honest controls, sandbox errors as None, an event loop that keeps running."""

from __future__ import annotations

import asyncio
import json
import math

import msgspec
import pytest

from halo_forge.integrations.trl import AsyncCodeReward, CodeReward, code_reward
from halo_forge.records import Verdict
from halo_forge.verify.config import VerifierConfig
from halo_forge.verify.runner import Verifier, verify_many
from halo_forge.verify.types import VerifySample
from tests.test_integrity_python import ADD, ATTACKS, T_ADD

pytest.importorskip("trl", reason="the [trl] extra (in [dev]) is not installed")

CONFIG = VerifierConfig(pch=False, cache=False)

DOUBLE_TESTS = [{"stdin": "2\n", "stdout": "4\n"}, {"stdin": "-5\n", "stdout": "-10\n"}]


def fenced(code: str, language: str = "python") -> str:
    return f"```{language}\n{code}```"


def _cli_rewards(completions: list[str], rows: list[dict]) -> list[Verdict]:
    """`halo-forge verify` on the same completions and tests (its library entry point)."""
    samples = [msgspec.convert({"id": str(i), "completion": c, **{k: v for k, v in row.items() if v}},
                               VerifySample) for i, (c, row) in enumerate(zip(completions, rows))]
    return verify_many(samples, config=CONFIG)


def test_code_reward_is_async_for_this_trl():
    from trl.trainer.utils import get_callable_name, is_async_callable

    reward = code_reward(CONFIG)
    assert isinstance(reward, AsyncCodeReward) and is_async_callable(reward)
    assert get_callable_name(reward) == "halo_forge"  # TRL's metric names: rewards/halo_forge/mean
    assert not is_async_callable(CodeReward(CONFIG))


@pytest.mark.parametrize("name", ["eq-object", "exit-module"])
def test_hostile_completion_beside_honest_control(name):
    _, attack, tests, _ = ATTACKS[name]
    assert tests == T_ADD
    reward = code_reward(CONFIG)
    try:
        got = asyncio.run(reward(prompts=["p", "p"], completions=[fenced(attack), fenced(ADD)],
                                 test_code=[T_ADD, T_ADD], language=["python", "python"]))
    finally:
        reward.close()
    assert got[1] == 1.0  # the honest control keeps its full reward
    assert got[0] <= CONFIG.ladder.compiled  # the cheat never earns more than "compiles"
    assert reward.last_verdicts[0].status != "passed"


def test_conversational_completions_and_json_columns():
    reward = CodeReward(CONFIG)
    metrics: dict[str, float] = {}
    extra: dict[str, list] = {}
    completions = [
        [{"role": "assistant", "content": fenced("print(int(input()) * 2)\n")}],
        [{"role": "assistant", "content": [{"type": "text", "text": fenced("print(int(input()) + 2)\n")}]}],
        [{"role": "assistant", "content": "no code today"}],
        "```c\nint main(void) { return missing; }\n```",
    ]
    try:
        got = reward(prompts=["p"] * 4, completions=completions,
                     io_tests=[json.dumps(DOUBLE_TESTS), DOUBLE_TESTS, DOUBLE_TESTS, None],
                     test_code=[None, "", None, None], language=["python", "py", None, "c"],
                     log_metric=metrics.__setitem__, log_extra=extra.__setitem__, trainer_state=None)
    finally:
        reward.close()
    assert got == [1.0, 0.75, 0.0, 0.0]
    assert [v.status for v in reward.last_verdicts] == ["passed", "wrong_answer", "no_code", "compile_error"]
    assert metrics["halo_forge/passed"] == 0.25 and metrics["halo_forge/no_code"] == 0.25
    assert metrics["halo_forge/timeout"] == 0.0 and metrics["halo_forge/sandbox_errors"] == 0.0
    assert extra["halo_forge_status"] == ["passed", "wrong_answer", "no_code", "compile_error"]


def test_bad_column_is_one_clear_error():
    from halo_forge.errors import HaloError

    reward = CodeReward(CONFIG)
    with pytest.raises(HaloError, match="completion 0.*io_tests"):
        reward(prompts=["p"], completions=["x"], io_tests=["{broken"])
    with pytest.raises(HaloError, match="cobol"):
        reward(prompts=["p"], completions=["x"], language=["cobol"])


def test_sandbox_error_is_none_and_counted(monkeypatch):
    execute = Verifier._execute

    async def flaky(self, prepared):  # what the runner returns when the sandbox fails
        if "SANDBOX_BREAKS" in prepared.program:
            return Verdict(id=prepared.sample_id, status="sandbox_error", reward=0.0,
                           output="sandbox: clone failed (test)", language=prepared.language)
        return await execute(self, prepared)

    monkeypatch.setattr(Verifier, "_execute", flaky)
    reward = code_reward(CONFIG)
    metrics: dict[str, float] = {}
    broken = fenced("# SANDBOX_BREAKS\nprint(int(input()) * 2)\n")
    try:
        got = asyncio.run(reward(prompts=["p"] * 2, completions=[broken, fenced("print(int(input()) * 2)\n")],
                                 io_tests=[DOUBLE_TESTS] * 2, language=["python"] * 2,
                                 log_metric=metrics.__setitem__))
    finally:
        reward.close()
    assert got == [None, 1.0]  # TRL turns None into NaN: left out of means and advantages
    assert metrics["halo_forge/sandbox_errors"] == 1.0 and reward.status_counts["sandbox_error"] == 1


def test_caller_loop_keeps_running_while_verifying():
    reward = code_reward(CONFIG)
    slow = fenced("import time\ntime.sleep(0.3)\nprint(int(input()) * 2)\n")

    async def main():
        ticks = 0
        done = False

        async def ticker():
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        before = ticks
        got = await reward(prompts=["p"], completions=[slow], io_tests=[DOUBLE_TESTS], language=["python"])
        during = ticks - before
        done = True
        await task
        return got, during

    try:
        got, during = asyncio.run(main())
    finally:
        reward.close()
    assert got == [1.0]
    assert during > 1  # a blocked loop would not have ticked while the batch ran


def test_one_verifier_across_calls():
    reward = code_reward(CONFIG)
    try:
        for _ in range(2):
            asyncio.run(reward(prompts=["p"], completions=[fenced(ADD)], test_code=[T_ADD], language=["python"]))
        first = reward.engine._verifier
        asyncio.run(reward(prompts=["p"], completions=[fenced(ADD)], test_code=[T_ADD], language=["python"]))
        assert reward.engine._verifier is first and first is not None
        assert reward.status_counts["passed"] == 3
    finally:
        reward.close()


# -- GRPOTrainer ---------------------------------------------------------------------------------

class RecordingReward(AsyncCodeReward):
    """The real reward, keeping each call's completions and test columns for the check."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.calls: list[tuple[list, list[dict]]] = []

    async def __call__(self, prompts=None, completions=(), **kwargs):
        rows = [{k: kwargs[k][i] for k in ("io_tests", "test_code", "language")} for i in range(len(completions))]
        self.calls.append((list(completions), rows))
        return await super().__call__(prompts, completions, **kwargs)


@pytest.mark.slow
def test_grpo_trainer_two_steps(tiny_model, tmp_path):
    from datasets import Dataset
    from peft import LoraConfig
    from trl import GRPOConfig, GRPOTrainer

    from halo_forge.data.chat import DEFAULT_SYSTEM
    from halo_forge.data.registry import load_problems

    problems = [p for p in load_problems("builtin") if p.language == "python"][:4]
    dataset = Dataset.from_list([{
        "prompt": [{"role": "system", "content": DEFAULT_SYSTEM}, {"role": "user", "content": p.prompt}],
        "io_tests": [{"stdin": t.stdin, "stdout": t.stdout} for t in p.io_tests],
        "test_code": p.test_code, "language": p.language,
    } for p in problems])
    args = GRPOConfig(
        output_dir=str(tmp_path / "grpo"), max_steps=2, per_device_train_batch_size=8, num_generations=4,
        max_completion_length=96, learning_rate=5e-3, logging_steps=1, save_strategy="no",
        report_to="none", use_cpu=True, seed=0, temperature=0.8, disable_tqdm=True,
    )
    reward = RecordingReward(CONFIG)
    trainer = GRPOTrainer(model=str(tiny_model), reward_funcs=[reward], args=args, train_dataset=dataset,
                          peft_config=LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    adapter = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}
    assert adapter
    try:
        trainer.train()
    finally:
        reward.close()

    steps = [row for row in trainer.state.log_history if "rewards/halo_forge/mean" in row]
    assert len(steps) == 2 and len(reward.calls) == 2
    all_verdicts = []
    for row, (completions, rows) in zip(steps, reward.calls):
        verdicts = _cli_rewards([c[-1]["content"] for c in completions], rows)
        all_verdicts += verdicts
        expected = [v.reward for v in verdicts if v.status != "sandbox_error"]
        assert row["rewards/halo_forge/mean"] == pytest.approx(sum(expected) / len(expected), abs=1e-5)
        passed = sum(v.status == "passed" for v in verdicts) / len(verdicts)
        assert row["halo_forge/passed"] == pytest.approx(passed, abs=1e-6)
    # The last batch, completion by completion, as TRL kept it for its completions table.
    logged = list(trainer._logs["rewards"]["halo_forge"])
    completions, rows = reward.calls[-1]
    assert [c[-1]["content"] for c in completions] == [c[-1]["content"] for c in trainer._logs["completion"]]
    cli = [v.reward for v in _cli_rewards([c[-1]["content"] for c in completions], rows)]
    assert logged == pytest.approx(cli, abs=1e-6)
    assert not any(math.isnan(x) for x in logged)

    assert len({v.reward for v in all_verdicts}) > 1  # the rewards differed: there was a gradient
    changed = [n for n, p in trainer.model.named_parameters() if n in adapter and not p.detach().equal(adapter[n])]
    assert changed, "GRPO left the adapter's weights unchanged"


def _child_rewards(reward, queue):
    import os

    got = asyncio.run(reward(prompts=["p"], completions=[fenced(ADD)], test_code=[T_ADD], language=["python"]))
    own = reward.engine._pid == os.getpid()
    reward.close()  # a forked Process leaves by os._exit: atexit would not stop this sandbox
    queue.put((got, own))


def test_forked_worker_gets_its_own_verifier():
    """Under accelerate each rank, and any worker forked from one, verifies on a sandbox of its
    own: a child inherits the parent's engine object, not its thread, and must start afresh
    rather than wait forever on a loop that does not run there."""
    import multiprocessing
    import os

    reward = code_reward(CONFIG)
    try:
        assert asyncio.run(reward(prompts=["p"], completions=[fenced(ADD)], test_code=[T_ADD],
                                  language=["python"])) == [1.0]
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_child_rewards, args=(reward, queue))
        child.start()
        child.join(120)  # a guard against a hang, not a speed check
        if child.is_alive():
            child.kill()
            pytest.fail("the forked worker's reward call hung")
        assert child.exitcode == 0
        got, own = queue.get(timeout=5)
        assert got == [1.0] and own
        # The parent's verifier still works after the child closed its own.
        assert reward.engine._pid == os.getpid()
        assert asyncio.run(reward(prompts=["p"], completions=[fenced(ADD)], test_code=[T_ADD],
                                  language=["python"])) == [1.0]
    finally:
        reward.close()

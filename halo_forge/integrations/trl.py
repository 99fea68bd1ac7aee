"""halo-forge's verifier as a TRL reward function:

    from halo_forge.integrations.trl import code_reward
    trainer = GRPOTrainer(model=..., reward_funcs=[code_reward()], train_dataset=dataset, ...)

TRL's contract (GRPOTrainer; checked against trl 1.16): the function gets `prompts`, `completions` (strings,
or for conversational datasets lists of messages) and every other dataset column as a keyword
argument holding one value per completion; it returns one reward per completion, where None
means "no reward for this one" (TRL turns it into NaN and leaves it out of the means and of the
advantages of that completion's group). The verifier reads the columns `io_tests`, `test_code`,
`language`, `checker`, `interactor` and `python_packages` (JSON text is accepted for the first
ones); a row without tests is rewarded for compiling and running cleanly, like `halo-forge
verify`.

Rewards are the verdicts' rewards, halo-forge's ladder (halo_forge/verify/rewards.py, set with
`VerifierConfig(ladder=...)`). A `sandbox_error` verdict says the infrastructure failed, not the
program: it is returned as None (never scored as a failure), counted, and logged.

Per batch it logs, through TRL's `log_metric` (averaged per logging step beside `reward`; <name>
is the function's `__name__`, default `halo_forge`): `<name>/<status>` the fraction of
completions with each verdict status, `<name>/guarded` the fraction a reward-hacking guard
capped, `<name>/sandbox_errors` their count; and through `log_extra` the status of each
completion (column `<name>_status`) in TRL's completions table. Without those
hooks (another caller, older TRL) the same counts go to the `halo_forge.integrations.trl`
logger. Running totals are on the object (`.status_counts`, `.guard_counts`).

code_reward() gives an async reward (TRL runs it on its own event loop, beside other async
rewards) where the installed TRL awaits async rewards, else a plain one; both verify on the
process's own BackgroundVerifier, never on TRL's loop.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from halo_forge.integrations.background import BackgroundVerifier
from halo_forge.integrations.samples import TEST_FIELDS, build_sample, completion_text
from halo_forge.metrics import guard_key
from halo_forge.records import STATUSES, Verdict
from halo_forge.verify.config import VerifierConfig
from halo_forge.verify.types import VerifySample

log = logging.getLogger(__name__)

__all__ = ["AsyncCodeReward", "CodeReward", "code_reward", "trl_awaits_async_rewards"]


class CodeReward:
    """A synchronous TRL reward function: verifies the batch, returns one float (or None for a
    sandbox_error) per completion. It blocks its caller until the batch is done: a caller on an
    event loop awaits AsyncCodeReward instead."""

    def __init__(self, config: VerifierConfig | None = None, *, name: str = "halo_forge") -> None:
        self.config = config or VerifierConfig()
        # TRL names the reward's columns and metrics after __name__ (rewards/<name>/mean).
        self.__name__ = name
        self.engine = BackgroundVerifier(self.config)
        self.status_counts: Counter[str] = Counter()
        self.guard_counts: Counter[str] = Counter()
        self.last_verdicts: list[Verdict] = []

    # -- the batch ------------------------------------------------------------------------

    def samples(self, completions: Sequence[Any], columns: dict[str, Any]) -> list[VerifySample]:
        n = len(completions)
        fields = {k: v for k, v in columns.items() if k in TEST_FIELDS and v is not None}
        for key, values in fields.items():
            if not isinstance(values, list | tuple) or len(values) != n:
                raise ValueError(f"reward column {key!r}: expected one value per completion ({n})")
        return [
            build_sample(str(i), completion_text(c), {k: v[i] for k, v in fields.items()},
                         where=f"{self.__name__} reward, completion {i}")
            for i, c in enumerate(completions)
        ]

    def rewards(self, verdicts: Sequence[Verdict], *, log_metric: Callable | None = None,
                log_extra: Callable | None = None) -> list[float | None]:
        self.last_verdicts = list(verdicts)
        statuses = Counter(v.status for v in verdicts)
        guards = Counter(guard_key(v.guard) for v in verdicts if v.guard)
        self.status_counts.update(statuses)
        self.guard_counts.update(guards)
        n = max(len(verdicts), 1)
        guarded = sum(guards.values())
        if log_metric is not None:
            # Every status each batch (zeros too), so each curve is a mean over the same steps.
            for status in STATUSES:
                log_metric(f"{self.__name__}/{status}", statuses.get(status, 0) / n)
            log_metric(f"{self.__name__}/guarded", guarded / n)
            log_metric(f"{self.__name__}/sandbox_errors", float(statuses.get("sandbox_error", 0)))
        else:
            log.info("%s: %d completions, statuses %s, guard hits %s", self.__name__, len(verdicts),
                     dict(statuses), dict(guards))
        if log_extra is not None:
            log_extra(f"{self.__name__}_status", [v.status for v in verdicts])
        if statuses.get("sandbox_error"):
            log.warning("%s: %d of %d completions hit a sandbox error (no reward given): %s",
                        self.__name__, statuses["sandbox_error"], len(verdicts),
                        next(v.output for v in verdicts if v.status == "sandbox_error"))
        return [None if v.status == "sandbox_error" or math.isnan(v.reward) else v.reward
                for v in verdicts]

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (),
                 **kwargs: Any) -> list[float | None]:
        samples = self.samples(completions, kwargs)
        return self.rewards(self.engine.verify(samples), log_metric=kwargs.get("log_metric"),
                            log_extra=kwargs.get("log_extra"))

    def close(self) -> None:
        self.engine.close()


class AsyncCodeReward(CodeReward):
    """The same reward as a coroutine function: TRL awaits it on its own loop (alongside other
    async rewards) while the batch is verified on the BackgroundVerifier's."""

    async def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] = (),
                       **kwargs: Any) -> list[float | None]:
        samples = self.samples(completions, kwargs)
        verdicts = await self.engine.averify(samples)
        return self.rewards(verdicts, log_metric=kwargs.get("log_metric"),
                            log_extra=kwargs.get("log_extra"))


def trl_awaits_async_rewards() -> bool:
    """Whether the installed TRL runs async reward functions (it awaits a callable object's
    async __call__ since it has trl.trainer.utils.is_async_callable)."""
    try:
        from trl.trainer.utils import is_async_callable  # noqa: F401
    except ImportError:
        return False
    return True


def code_reward(config: VerifierConfig | None = None, *, name: str = "halo_forge") -> CodeReward:
    """The reward function for GRPOTrainer(reward_funcs=[...]): async where TRL supports it."""
    cls = AsyncCodeReward if trl_awaits_async_rewards() else CodeReward
    return cls(config, name=name)

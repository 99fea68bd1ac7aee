"""halo-forge's verifier as verl's custom reward function. In verl's config:

    custom_reward_function.path=<site-packages>/halo_forge/integrations/verl.py
    custom_reward_function.name=compute_score            # one sample per call (naive manager)
    # or: name=compute_score_batch with reward_model.reward_manager=batch (a batch per call,
    # verified concurrently: the faster choice)

verl calls `compute_score(data_source, solution_str, ground_truth, extra_info=None, **reward_kwargs)`
per sample, or `compute_score_batch(data_sources, solution_strs, ground_truths, extra_infos,
**reward_kwargs)` per batch. This module never imports verl.

`ground_truth` (the dataset's reward_model.ground_truth) holds the sample's tests: a dict, or its
JSON text, with any of `io_tests` (a list of {"stdin", "stdout"}), `test_code`, `language`,
`checker`, `interactor`, `python_packages`, e.g.
    {"language": "python", "io_tests": [{"stdin": "2 3\\n", "stdout": "5\\n"}]}
`extra_info` may carry `language` too (ground_truth wins). Unknown keys are ignored.

Each call returns a dict: "score" (the reward on halo-forge's ladder, the same as `halo-forge
verify` gives) and numeric extras verl logs per sample: "passed", "compiled", "guarded",
"sandbox_error". verl has no way to skip a sample, so a sandbox_error (the infrastructure
failed, not the program) is scored 0.0 with "sandbox_error": 1.0 and a warning, so its mean
shows on the dashboard; pass `on_sandbox_error="raise"` (custom_reward_function.reward_kwargs)
to stop the run instead.

The verifier runs with the default VerifierConfig, one per worker process, alive across calls
(halo_forge/integrations/background.py); `config=` (a VerifierConfig) uses another.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

# verl loads this file by path (spec_from_file_location), not as halo_forge.integrations.verl:
# the absolute imports below still work wherever halo_forge is installed.
from halo_forge.errors import HaloError
from halo_forge.integrations.background import BackgroundVerifier, default_verifier
from halo_forge.integrations.samples import build_sample
from halo_forge.records import Verdict
from halo_forge.verify.config import VerifierConfig

log = logging.getLogger("halo_forge.integrations.verl")

__all__ = ["compute_score", "compute_score_batch", "ground_truth_fields", "score_dict"]

_ENGINES: dict[tuple[int, bytes], BackgroundVerifier] = {}


def _engine(config: VerifierConfig | None) -> BackgroundVerifier:
    if config is None:
        return default_verifier()
    import msgspec

    key = (os.getpid(), msgspec.json.encode(config))
    engine = _ENGINES.get(key)
    if engine is None:
        engine = _ENGINES[key] = BackgroundVerifier(config)
    return engine


def ground_truth_fields(ground_truth: Any, extra_info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The verifier's fields from verl's ground_truth (dict or JSON text) and extra_info."""
    if isinstance(ground_truth, str | bytes):
        try:
            ground_truth = json.loads(ground_truth) if ground_truth.strip() else {}
        except json.JSONDecodeError as exc:
            raise HaloError(f"verl ground_truth is not JSON ({exc.msg}): give a JSON object with "
                            "io_tests / test_code / language") from None
    if ground_truth is None:
        ground_truth = {}
    if not isinstance(ground_truth, Mapping):
        raise HaloError(f"verl ground_truth must be an object with io_tests / test_code / language, "
                        f"got {type(ground_truth).__name__}")
    fields = dict(ground_truth)
    if extra_info and "language" not in fields and isinstance(extra_info, Mapping):
        if extra_info.get("language"):
            fields["language"] = extra_info["language"]
    return fields


def score_dict(verdict: Verdict, *, on_sandbox_error: str = "zero") -> dict[str, float]:
    if verdict.status == "sandbox_error":
        if on_sandbox_error == "raise":
            raise HaloError(f"sandbox error verifying a sample: {verdict.output}")
        log.warning("sandbox error (scored 0.0, flagged sandbox_error=1): %s", verdict.output)
    sandbox_error = verdict.status == "sandbox_error"
    return {
        "score": 0.0 if sandbox_error else float(verdict.reward),
        "passed": float(verdict.status == "passed"),
        "compiled": float(verdict.compiled),
        "guarded": float(bool(verdict.guard)),
        "sandbox_error": float(sandbox_error),
    }


def _check_policy(on_sandbox_error: str) -> None:
    if on_sandbox_error not in ("zero", "raise"):
        raise HaloError(f"on_sandbox_error={on_sandbox_error!r}: use 'zero' or 'raise'")


def compute_score_batch(data_sources: Sequence[Any], solution_strs: Sequence[str],
                        ground_truths: Sequence[Any], extra_infos: Sequence[Any] | None = None, *,
                        config: VerifierConfig | None = None, on_sandbox_error: str = "zero",
                        **_: Any) -> list[dict[str, float]]:
    """verl's batch form (reward_model.reward_manager=batch): one score dict per sample."""
    _check_policy(on_sandbox_error)
    n = len(solution_strs)
    if len(ground_truths) != n:
        raise HaloError(f"verl batch: {n} solutions but {len(ground_truths)} ground truths")
    infos = list(extra_infos) if extra_infos is not None else [None] * n
    samples = [
        build_sample(str(i), solution_strs[i] or "", ground_truth_fields(ground_truths[i], infos[i]),
                     where=f"verl sample {i}")
        for i in range(n)
    ]
    verdicts = _engine(config).verify(samples)
    return [score_dict(v, on_sandbox_error=on_sandbox_error) for v in verdicts]


def compute_score(data_source: Any, solution_str: str, ground_truth: Any,
                  extra_info: Mapping[str, Any] | None = None, *, config: VerifierConfig | None = None,
                  on_sandbox_error: str = "zero", **_: Any) -> dict[str, float]:
    """verl's per-sample custom reward function."""
    return compute_score_batch([data_source], [solution_str], [ground_truth], [extra_info],
                               config=config, on_sandbox_error=on_sandbox_error)[0]


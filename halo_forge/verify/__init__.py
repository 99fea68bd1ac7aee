"""The verifier: model output -> extracted code -> sandboxed compile and tests -> verdict + reward.

Public API (light imports; the sandbox extension loads only when a run starts):
    VerifySample, Verdict            the contract's records (in: halo_forge.verify.types;
                                     out: halo_forge.records, the schema every stage shares)
    VerifierConfig                   per-language compilers, flags, limits, reward ladder
    verify_stream, verify_many       async stream / sync convenience (halo_forge.verify.runner)
"""

from __future__ import annotations

from halo_forge.records import STATUSES, Verdict
from halo_forge.verify.types import VerifySample

__all__ = ["STATUSES", "Verdict", "VerifierConfig", "VerifySample", "verify_many", "verify_stream"]


def __getattr__(name: str):
    # Lazy so that `import halo_forge.verify` stays cheap.
    if name == "VerifierConfig":
        from halo_forge.verify.config import VerifierConfig

        return VerifierConfig
    if name in ("verify_stream", "verify_many"):
        from halo_forge.verify import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'halo_forge.verify' has no attribute {name!r}")

"""Verification past one machine: VerifyWorker actors on a Ray cluster (docs/design.md,
"Several machines"). Nothing here imports Ray until a cluster address is set."""

from __future__ import annotations

from typing import Any

from halo_forge.cluster.settings import ClusterSettings
from halo_forge.verify.config import VerifierConfig


def open_verifier(config: VerifierConfig | None, cluster: ClusterSettings | None = None,
                  **local: Any) -> Any:
    """The verifier for `config`: this machine's Verifier (`local` are its keyword options)
    when no cluster address is set, else a RayVerifier. Use it as `async with`."""
    if cluster is None or not cluster.enabled:
        from halo_forge.verify.runner import Verifier

        return Verifier(config, **local)
    from halo_forge.cluster.verifier import RayVerifier

    return RayVerifier(config, cluster)


__all__ = ["ClusterSettings", "open_verifier"]

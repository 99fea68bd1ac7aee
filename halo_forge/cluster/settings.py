"""ClusterSettings: the `[cluster]` table of pipeline.toml, and `--ray-address` on the commands
that verify (verify, raft train, benchmark run, run). Importing it does not import Ray.

`address = ""` (the default) verifies on this machine, as always; anything else sends the
samples to verifier workers on a Ray cluster (halo_forge/cluster/verifier.py).
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

# A GCS address as `ray start --head` prints it (a driver on a cluster node), or a Ray Client
# address (a driver anywhere that reaches the head's client port).
_HOST_PORT = re.compile(r"^(ray://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


def _doc(text: str) -> msgspec.Meta:
    return msgspec.Meta(description=text)


class ClusterSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    address: Annotated[str, _doc(
        "Ray cluster that verifies the samples: \"\" = this machine without Ray, \"local\" = a "
        "Ray instance started here, \"auto\" = the cluster this node belongs to, "
        "\"ray://host:10001\" = a remote cluster's client port, or its GCS host:port")] = ""
    workers_per_node: Annotated[int, _doc(
        "verifier workers (Ray actors, each with its own sandbox) per node")] = 1
    concurrency_per_worker: Annotated[int | None, _doc(
        "samples each worker verifies at once (default: the node's CPUs / workers_per_node)")] = None
    allow_mixed_toolchains: Annotated[bool, _doc(
        "run even when nodes report different compiler versions (their verdicts may differ)")] = False
    batch_size: Annotated[int, _doc(
        "samples sent to a worker in one call (fewer calls; a batch's verdicts still stream "
        "back one by one)")] = 4
    timeout_s: Annotated[float, _doc(
        "longest wait for a worker's next verdict before it is taken as dead and its samples "
        "are sent to another")] = 600.0
    start_timeout_s: Annotated[float, _doc(
        "longest wait to connect to the cluster and start its workers")] = 120.0
    max_sandbox_errors: Annotated[int, _doc(
        "a worker whose sandbox fails this many samples in a row is retired")] = 5

    def __post_init__(self) -> None:
        a = self.address
        if a not in ("", "local", "auto") and not _HOST_PORT.match(a):
            raise ValueError(f"cluster.address {a!r} is not \"\", \"local\", \"auto\", "
                             "\"ray://host:port\" or \"host:port\"")
        if self.workers_per_node < 1:
            raise ValueError(f"cluster.workers_per_node must be >= 1, got {self.workers_per_node}")
        if self.concurrency_per_worker is not None and self.concurrency_per_worker < 1:
            raise ValueError("cluster.concurrency_per_worker must be >= 1 (or left out: the "
                             "node's CPUs)")
        if self.batch_size < 1 or self.max_sandbox_errors < 1:
            raise ValueError("cluster.batch_size and cluster.max_sandbox_errors must be >= 1")
        if self.timeout_s <= 0 or self.start_timeout_s <= 0:
            raise ValueError("cluster.timeout_s and cluster.start_timeout_s must be > 0")

    @property
    def enabled(self) -> bool:
        return bool(self.address)


__all__ = ["ClusterSettings"]

"""What `halo-forge cluster check` shows, and the toolchain check every cluster start runs.

A node whose gcc differs gives different verdicts for the same program (warnings, optimiser
bugs, a header that moved), so mixed toolchains are refused by default, naming the node and
the tool; `[cluster] allow_mixed_toolchains = true` accepts them.
"""

from __future__ import annotations

from collections.abc import Sequence

from halo_forge.cluster.workers import NodeReport
from halo_forge.errors import HaloError


def _node(report: NodeReport) -> str:
    return f"{report.ip} ({report.node_id[:8]})"


def toolchain_mismatch(reports: Sequence[NodeReport]) -> str:
    """"" when every node reports the same version of every tool; else one line naming the
    first node and tool that differ from the first node's."""
    if not reports:
        return ""
    first = reports[0]
    for report in reports[1:]:
        for tool in sorted(set(first.toolchains) | set(report.toolchains)):
            ours, theirs = first.toolchains.get(tool, ""), report.toolchains.get(tool, "")
            if ours != theirs:
                return (f"node {_node(report)} has {tool} {theirs or 'missing'!r} but node "
                        f"{_node(first)} has {ours or 'missing'!r}")
    return ""


def refuse_mixed_toolchains(reports: Sequence[NodeReport], *, allow: bool) -> None:
    why = toolchain_mismatch(reports)
    if why and not allow:
        raise HaloError(f"cluster: mixed toolchains: {why}; install the same versions on every "
                        "node, or set [cluster] allow_mixed_toolchains = true")


def _short(version: str) -> str:
    if not version:
        return "missing"
    words = version.split()
    if words[0] == "python":  # "python 3.11.7 (main, ...)"
        return " ".join(words[:2])
    if words[0] == "rustc":  # "rustc 1.83.0 (90b35a623 2024-11-26) binary: ..."
        return " ".join(words[:2])
    return words[-1] if len(words) > 1 else version  # "gcc (Debian 12.2.0-14) 12.2.0"


def table(reports: Sequence[NodeReport]) -> list[str]:
    """One line per node (its workers counted together), under a header."""
    by_node: dict[str, list[NodeReport]] = {}
    for report in reports:
        by_node.setdefault(report.node_id, []).append(report)
    tools = sorted({tool for r in reports for tool in r.toolchains})
    rows = [["node", "ip", "workers", "slots", "cores", "protections", *tools]]
    for node_id, group in by_node.items():
        r = group[0]
        off = sorted(name for name, why in r.protections.items() if why)
        active = len(r.protections) - len(off)
        prot = f"{active}/{len(r.protections)}" + (f" (off: {', '.join(off)})" if off else "")
        rows.append([node_id[:8], r.ip, str(len(group)), str(sum(g.concurrency for g in group)),
                     str(r.cores), prot, *(_short(r.toolchains.get(t, "")) for t in tools)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in rows]


__all__ = ["refuse_mixed_toolchains", "table", "toolchain_mismatch"]

"""A real pipeline run in its own process with a scripted generation backend (tests only).

Usage: python tests/raft_fake_run.py CONFIG.toml GEN_LOG
Completions are deterministic per sample id; every id the backend generates is appended to
GEN_LOG, so a test can see what a resumed run generated again. Programs sleep a little so a
test can kill the run in the middle of a cycle's verification. HALO_FAKE_STUCK=1: from the
second batch on, generation blocks in a worker thread for an hour (a stuck library call).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio

from halo_forge.generate.base import Batch, BatchStats, GenerationParams, make_sample


class FakeBackend:
    name = "fake"
    model = "fake-model"
    adapter = ""

    def __init__(self, log: Path) -> None:
        self.log = log

    async def stream(self, problems, *, samples_per_prompt, params, cycle=0):
        rows = [(p, i) for p in problems for i in range(samples_per_prompt)]
        for k in range(0, len(rows), 4):
            await anyio.sleep(0.05)
            out = []
            for p, i in rows[k:k + 4]:
                # Distinct code per sample (no cache hits); never the right answer.
                code = f"import time\ntime.sleep(0.2)\nprint('{p.id} {cycle} {i}')\n"
                if os.environ.get("HALO_FAKE_PASS") and i == 0 and p.reference:
                    code = p.reference  # passes: RAFT keeps it and trains on it
                out.append(make_sample(p, cycle=cycle, index=i,
                                       completion=f"```python\n{code}```",
                                       prompt_tokens=1, completion_tokens=10,
                                       params=GenerationParams(model=self.model)))
            with open(self.log, "a") as f:
                f.writelines(f"{s.id}\n" for s in out)
            if k and os.environ.get("HALO_FAKE_STUCK"):
                # A library call in a worker thread that no cancellation can interrupt.
                import time

                await anyio.to_thread.run_sync(time.sleep, 3600)
            yield Batch(out, BatchStats(samples=len(out), completion_tokens=10 * len(out),
                                        wall_s=0.05))

    def load_adapter(self, path):
        self.adapter = path or ""

    def sleep(self):
        pass

    def wake_up(self):
        pass

    def close(self):
        pass


def main() -> int:
    from halo_forge import pipeline
    from halo_forge.cli.run import run_config
    from halo_forge.config import load_config
    from halo_forge.errors import HaloError

    config, text = load_config(sys.argv[1])
    backend = FakeBackend(Path(sys.argv[2]))
    pipeline.Pipeline._backend_for = lambda self, model, adapter: backend
    try:
        return run_config(config, config_text=text)
    except HaloError as exc:  # what halo_forge.cli.main does
        print(f"halo-forge: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

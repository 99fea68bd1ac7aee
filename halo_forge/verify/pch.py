"""A precompiled <bits/stdc++.h> for g++: about 0.4 s per compile instead of about 2 s.

Almost every CodeForces C++ program starts with `#include <bits/stdc++.h>`. g++ looks for
`bits/stdc++.h.gch` in each include directory before `bits/stdc++.h`, and uses it when it was
built with compatible flags. So the PCH lives in a directory of its own
(`<cache_dir>/pch/<compiler+flags>-<compiler identity>/bits/`, beside a copy of the header so that
an unusable .gch falls back to the same text), and a compile adds `-I <that directory>`.
It is built once per compiler and flags, on first use, by the trusted compiler on a trusted
header; a new compiler version gets a new directory and the old one is removed.
Only g++ reads .gch files this way; clang compiles without a PCH.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import anyio

from halo_forge.verify.toolchains import Toolchain, short_hash

log = logging.getLogger(__name__)

HEADER = "bits/stdc++.h"
# Only the first include can be served from a PCH; anything before it (code, other
# includes) makes g++ ignore it, so we skip the -I there and save nothing and lose nothing.
_FIRST_INCLUDE = re.compile(r"\A(?:\s|//[^\n]*\n|/\*.*?\*/|#\s*(?:pragma|define|undef)[^\n]*\n)*"
                            r"#\s*include\s*<bits/stdc\+\+\.h>", re.DOTALL)


def wants_pch(source: str) -> bool:
    """Whether g++ could use the PCH for this source (bits/stdc++.h is its first include)."""
    return _FIRST_INCLUDE.match(source) is not None


class PchCache:
    """Builds and finds precompiled headers under `root` (thread- and process-safe: a build
    happens in a private directory that is renamed into place)."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root) / "pch"
        self._locks: dict[str, anyio.Lock] = {}
        self._failed: set[str] = set()

    def _dirs(self, tc: Toolchain) -> tuple[str, Path]:
        family = short_hash(tc.path, *tc.flags)
        return family, self.root / f"{family}-{short_hash(tc.identity)}"

    def ready_dir(self, tc: Toolchain) -> Path | None:
        """The include directory if its PCH is already built, else None."""
        target = self._dirs(tc)[1]
        return target if (target / (HEADER + ".gch")).is_file() else None

    async def include_dir(self, tc: Toolchain) -> Path | None:
        """The directory to add with -I for `tc`, building the PCH first if needed; None when
        this toolchain cannot have one (not g++, or the build failed)."""
        if not tc.is_gcc or tc.language != "cpp":
            return None
        target = self._dirs(tc)[1]
        if target.name in self._failed:
            return None
        ready = self.ready_dir(tc)
        if ready is not None:
            return ready
        lock = self._locks.setdefault(target.name, anyio.Lock())
        async with lock:
            if self.ready_dir(tc) is None and target.name not in self._failed:
                try:
                    await anyio.to_thread.run_sync(self.build, tc)
                except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
                    self._failed.add(target.name)
                    log.warning("precompiled header for %s not built, compiling without: %s", tc.name, exc)
                    return None
        return self.ready_dir(tc)

    def build(self, tc: Toolchain) -> Path:
        """Build the PCH for `tc` (blocking, a few seconds) and return its include directory."""
        family, target = self._dirs(tc)
        header = self._find_header(tc)
        self.root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=self.root))
        try:
            (work / "bits").mkdir()
            shutil.copyfile(header, work / HEADER)
            done = subprocess.run(
                [tc.path, *tc.flags, "-x", "c++-header", str(work / HEADER), "-o", str(work / (HEADER + ".gch"))],
                capture_output=True, text=True, timeout=300, check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"{tc.name} exited {done.returncode}: {done.stderr.strip()[-300:]}")
            os.chmod(work, 0o755)  # mkdtemp makes it 0700; sandboxed compiles read it as another uid
            try:
                os.rename(work, target)
            except OSError:
                if not (target / (HEADER + ".gch")).is_file():  # lost a race with another process: fine
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
        for old in self.root.glob(f"{family}-*"):  # the same compiler and flags, an older version
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
        return target

    @staticmethod
    def _find_header(tc: Toolchain) -> str:
        # `-H` lists every header the preprocessor opens, the outermost first.
        done = subprocess.run(
            [tc.path, *tc.flags, "-E", "-H", "-x", "c++", "-", "-o", os.devnull],
            input="#include <bits/stdc++.h>\n", capture_output=True, text=True, timeout=120, check=False,
        )
        for line in done.stderr.splitlines():
            if line.startswith(". ") and line.endswith(HEADER):
                return line[2:].strip()
        raise RuntimeError(f"{tc.name} has no <{HEADER}>")

"""The sandbox as an ordinary user: the same tests, run by an unprivileged uid.

Needs root to create that situation (drop to uid 65534 with no groups); when the Python
installation lives under a mode-0700 /root, it is bound into a private mount namespace of the
test's child rather than chmod-ing the host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to an unprivileged uid")
@pytest.mark.skipif(not (shutil.which("setpriv") and shutil.which("unshare")),
                    reason="util-linux setpriv/unshare not installed")
def test_sandbox_tests_pass_as_an_unprivileged_user(tmp_path):
    # sys.executable, not its realpath: inside a virtualenv that is what finds the venv's
    # packages (pytest, the installed extension).
    python = sys.executable
    needed = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, REPO)}
    tops = sorted({"/root/" + p.split("/")[2] for p in needed if p.startswith("/root/")})
    setup = ""
    if tops:
        # /root is 0700: show only the directories the test needs there (the interpreter, the
        # venv, the checkout), in a private mount namespace.
        stashes = []
        for n, top in enumerate(tops):
            stash = tmp_path / f"stash{n}"
            stash.mkdir()
            stashes.append((stash, top))
            setup += f"mount --bind {top} {stash} && "
        setup += "mount -t tmpfs tmpfs /root && "
        for stash, top in stashes:
            setup += f"mkdir {top} && mount --move {stash} {top} && "
    os.chmod(tmp_path, 0o755)
    tests = (
        "tests/test_sandbox.py tests/test_sandbox_prepared.py tests/test_sandbox_facade.py tests/test_sandbox_pair.py "
        "tests/test_verify_python_warm.py")
    cmd = (f"{setup}cd {REPO} && setpriv --reuid=65534 --regid=65534 --clear-groups -- "
           f"{python} -m pytest -q -p no:cacheprovider {tests} && "
           f"exec setpriv --reuid=65534 --regid=65534 --clear-groups -- {python} -m halo_forge sandbox check --strict")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(PYTHONDONTWRITEBYTECODE="1", HOME="/tmp")
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", cmd],
                          capture_output=True, text=True, timeout=600, env=env, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert " passed" in out and "failed" not in out
    assert "user_namespace         active" in out and "OFF" not in out, out[-2000:]

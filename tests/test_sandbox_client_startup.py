"""The caller's side of the zygote's start-up: a zygote that dies or answers nonsense before its
hello is a clear error at once, never a hang (the client reads its socket through the same
non-blocking helper as the zygote reads its pipes)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from halo_forge import _sandbox


def start(zygote: str, base: str) -> BaseException | None:
    """Client(zygote, base) on a thread; its exception, or None if it started."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            _sandbox.Client(zygote, base, 1, 0).close()
            outcome.append(None)
        except BaseException as e:  # handed back to the test
            outcome.append(e)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    # Far above any start-up; a client stuck on a closed socket would never finish.
    t.join(120)
    assert not t.is_alive(), "the client hangs on a zygote that is gone"
    return outcome[0]


def fake_zygote(tmp_path, body: str) -> str:
    exe = tmp_path / "fake-zygote"
    exe.write_text("#!/bin/sh\n" + body + "\n")
    exe.chmod(0o755)
    return str(exe)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("exit 1", "exited during start-up"),
        # Half a frame (a 64-byte body announced, one byte sent), then gone.
        (r'printf "\100\000\000\000\001" >&3', "exited during start-up"),
        # A whole frame that is no hello; the process stays to show the frame decides.
        (r'printf "\001\000\000\000\002" >&3; sleep 1', "bad hello"),
    ],
)
def test_a_zygote_that_fails_before_its_hello(tmp_path, body, message):
    base = tmp_path / "halo-forge-sandbox-x"
    base.mkdir()
    err = start(fake_zygote(tmp_path, body), str(base))
    assert isinstance(err, RuntimeError) and message in str(err), err


def test_the_real_zygote_starts(tmp_path):
    base = tmp_path / "halo-forge-sandbox-x"
    base.mkdir()
    (base / ".root").mkdir()
    zygote = str(Path(_sandbox.__file__).with_name("halo-forge-zygote"))
    assert start(zygote, str(base)) is None

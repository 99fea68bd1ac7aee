"""Output paths are checked before any work: each bad place is one HaloError naming the path,
and every good place passes without leaving anything behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from halo_forge.errors import HaloError
from halo_forge.paths import check_output_dir, check_output_file

REPO = Path(__file__).resolve().parent.parent


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(HaloError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_good_places_pass_and_create_nothing(tmp_path) -> None:
    (tmp_path / "old.jsonl").write_text("x\n")
    before = sorted(tmp_path.rglob("*"))
    assert check_output_dir(tmp_path / "new" / "deeper", what="--output") == tmp_path / "new" / "deeper"
    assert check_output_dir(tmp_path, what="--output") == tmp_path
    check_output_file(tmp_path / "a" / "b.jsonl", what="--out", input_paths=[tmp_path / "old.jsonl"])
    check_output_file(tmp_path / "old.jsonl", what="--out")  # replacing an old output is fine
    assert sorted(tmp_path.rglob("*")) == before


def test_a_file_where_a_folder_goes(tmp_path) -> None:
    f = tmp_path / "f"
    f.write_text("")
    assert "is a file" in _error(check_output_dir, f, what="output.dir")
    msg = _error(check_output_dir, f / "sub", what="output.dir")
    assert str(f) in msg and "is a file" in msg
    msg = _error(check_output_file, f / "v.jsonl", what="verify --out")
    assert msg.startswith(f"verify --out {f / 'v.jsonl'}:") and "is a file" in msg


def test_a_folder_where_a_file_goes(tmp_path) -> None:
    msg = _error(check_output_file, tmp_path, what="verify --out")
    assert str(tmp_path) in msg and "is a folder" in msg


def test_the_input_itself_by_any_name(tmp_path) -> None:
    src = tmp_path / "s.jsonl"
    src.write_text("{}\n")
    (tmp_path / "link.jsonl").symlink_to(src)
    os.link(src, tmp_path / "hard.jsonl")
    for out in (src, tmp_path / "link.jsonl", tmp_path / "hard.jsonl",
                tmp_path / "sub" / ".." / "s.jsonl"):
        if out.parent.name == "..":
            (tmp_path / "sub").mkdir(exist_ok=True)
        msg = _error(check_output_file, out, what="verify --out", input_paths=[src])
        assert "is the input" in msg, out
    # A copy is another file.
    shutil.copy(src, tmp_path / "copy.jsonl")
    check_output_file(tmp_path / "copy.jsonl", what="verify --out", input_paths=[src])


def test_pseudo_file_systems_and_devices() -> None:
    for path in ("/proc/halo-forge-out", "/proc/self/halo-forge-out/x", "/sys/halo-forge-out"):
        assert "cannot create files" in _error(check_output_dir, path, what="output.dir")
        assert "cannot create files" in _error(check_output_file, path + ".jsonl", what="--out")
    # The rename that publishes an output would replace the device node itself.
    assert "not a regular file" in _error(check_output_file, "/dev/null", what="--out")


def _run_on_read_only_place(tmp_path: Path, script: str) -> subprocess.CompletedProcess:
    """Runs `script` (with RO set to a read-only folder) where a write there really fails: a
    read-only tmpfs in a private mount namespace as root (root ignores mode bits), a 0555
    folder otherwise."""
    ro = tmp_path / "ro"
    ro.mkdir()
    code = f"RO = {str(ro)!r}\n{script}"
    if os.geteuid() != 0:
        ro.chmod(0o555)
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd=REPO, timeout=120)
    if not shutil.which("unshare"):
        pytest.skip("needs util-linux unshare to make a read-only mount as root")
    cmd = f"mount -t tmpfs -o ro tmpfs {ro} && exec {sys.executable} -c \"$0\""
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                           cmd, code], capture_output=True, text=True, cwd=REPO, timeout=120)


def test_read_only_place(tmp_path) -> None:
    script = (
        "from halo_forge.paths import check_output_dir, check_output_file\n"
        "from halo_forge.errors import HaloError\n"
        "for fn, p in ((check_output_dir, RO), (check_output_dir, RO + '/new'),\n"
        "              (check_output_file, RO + '/v.jsonl')):\n"
        "    try:\n"
        "        fn(p, what='--out')\n"
        "        print('accepted', p)\n"
        "    except HaloError as e:\n"
        "        print('refused', e)\n"
    )
    done = _run_on_read_only_place(tmp_path, script)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("refused --out ") for line in lines), lines
    assert all("cannot create files" in line for line in lines)

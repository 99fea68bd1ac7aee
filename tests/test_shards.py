"""Shards: round trips, atomic writes, corruption and truncation errors, kill -9 recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import msgspec
import pytest

from halo_forge.errors import HaloError
from halo_forge.records import SCHEMA_VERSION, Example, GenerationParams, Message, Problem, Sample
from halo_forge.shards import (
    MAGIC,
    ShardAppender,
    ShardError,
    ShardReader,
    ShardWriter,
    read_shards,
    shard_header,
    write_shard,
)

REPO = Path(__file__).resolve().parents[1]


def samples(n: int, start: int = 0) -> list[Sample]:
    return [
        Sample(
            id=f"p{i}/c0/s0",
            problem_id=f"p{i}",
            cycle=i % 3,
            language="cpp",
            completion=f"```cpp\nint main(){{return {i};}}\n```" + "x" * (i % 50),
            code=f"int main(){{return {i};}}",
            completion_tokens=i,
            params=GenerationParams(model="tiny", temperature=0.8, seed=i),
        )
        for i in range(start, start + n)
    ]


def test_round_trip_keeps_every_field_and_order(tmp_path: Path) -> None:
    records = samples(500)
    path = tmp_path / "s.shard"
    assert write_shard(path, records, Sample, frame_bytes=4096) == 500
    back = list(ShardReader(path, Sample))
    assert back == records
    header = shard_header(path)
    assert (header.record_type, header.schema_version) == ("Sample", SCHEMA_VERSION)


def test_untyped_read_gives_plain_dicts(tmp_path: Path) -> None:
    path = tmp_path / "e.shard"
    ex = Example(id="a", messages=[Message(role="user", content="hi")], source="t")
    write_shard(path, [ex], Example)
    (row,) = list(read_shards(path))
    assert row["id"] == "a" and row["messages"] == [{"role": "user", "content": "hi"}]


def test_writer_rolls_files_at_max_bytes(tmp_path: Path) -> None:
    records = samples(2000)
    with ShardWriter(tmp_path / "out", Sample, max_bytes=8192, frame_bytes=2048) as w:
        w.write_all(records)
    assert len(w.paths) > 2
    assert all(p.stat().st_size < 8192 + 4096 for p in w.paths)  # bounded: max + one frame
    assert list(read_shards(tmp_path / "out", Sample)) == records
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_writer_with_no_records_writes_no_file(tmp_path: Path) -> None:
    with ShardWriter(tmp_path / "out", Sample) as w:
        pass
    assert w.paths == [] and list((tmp_path / "out").iterdir()) == []


def test_failed_write_leaves_no_half_file(tmp_path: Path) -> None:
    out = tmp_path / "out"

    def gen():
        yield from samples(300)
        raise RuntimeError("producer died")

    with pytest.raises(RuntimeError):
        with ShardWriter(out, Sample, max_bytes=4096, frame_bytes=1024) as w:
            w.write_all(gen())
    finished = list(w.paths)
    assert finished  # earlier files were completed...
    assert sorted(out.iterdir()) == sorted(finished)  # ...and nothing else is there
    for p in finished:
        list(ShardReader(p, Sample))  # each is whole

    with pytest.raises(RuntimeError):
        write_shard(tmp_path / "one.shard", gen(), Sample)
    assert not list(tmp_path.glob("*one.shard*"))


def test_wrong_record_type_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.shard"
    write_shard(path, samples(3), Sample)
    with pytest.raises(HaloError, match="holds Sample records, expected Problem"):
        ShardReader(path, Problem)
    with pytest.raises(TypeError):
        write_shard(tmp_path / "x.shard", [Problem(id="a", language="c", prompt="p")], Sample)


def _frame_offsets(path: Path) -> list[int]:
    import struct

    data = path.read_bytes()
    offsets, pos = [], len(MAGIC)
    while pos < len(data):
        offsets.append(pos)
        (length,) = struct.unpack_from("<I", data, pos + 4)
        pos += 16 + length
    return offsets  # HEAD, DATA..., END


@pytest.mark.parametrize("cut", ["mid_header", "mid_payload", "before_end"])
def test_truncated_shard_names_file_and_offset(tmp_path: Path, cut: str) -> None:
    path = tmp_path / "s.shard"
    write_shard(path, samples(300), Sample, frame_bytes=2048)
    offsets = _frame_offsets(path)
    data_frames = offsets[1:-1]
    assert len(data_frames) >= 3
    frame = data_frames[2]
    size = {"mid_header": frame + 7, "mid_payload": frame + 40, "before_end": offsets[-1]}[cut]
    os.truncate(path, size)
    with pytest.raises(ShardError, match="truncated shard") as err:
        list(ShardReader(path, Sample))
    expected = offsets[-1] if cut == "before_end" else frame
    assert err.value.offset == expected
    assert str(path) in str(err.value) and f"at byte {expected}" in str(err.value)
    # The complete frames are still readable on request, and the loss is reported.
    reader = ShardReader(path, Sample, allow_partial=True)
    kept = list(reader)
    assert kept == samples(len(kept)) and len(kept) > 0
    assert reader.recovery is not None and not reader.recovery.finished
    assert reader.recovery.dropped_bytes == size - expected


def test_flipped_byte_is_a_checksum_error_at_its_frame(tmp_path: Path) -> None:
    path = tmp_path / "s.shard"
    write_shard(path, samples(300), Sample, frame_bytes=2048)
    frame = _frame_offsets(path)[2]
    data = bytearray(path.read_bytes())
    data[frame + 30] ^= 0x40
    path.write_bytes(bytes(data))
    with pytest.raises(ShardError, match="checksum mismatch") as err:
        list(ShardReader(path, Sample))
    assert err.value.offset == frame


def test_not_a_shard(tmp_path: Path) -> None:
    path = tmp_path / "x.shard"
    path.write_text('{"id": 1}\n')
    with pytest.raises(ShardError, match="not a halo-forge shard"):
        list(read_shards(path))


def test_old_records_gain_new_fields_with_defaults(tmp_path: Path) -> None:
    class V1(msgspec.Struct, kw_only=True):
        id: str

    class V2(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
        id: str
        score: float = 0.5

    V1.__name__ = V2.__name__ = "Rec"
    path = tmp_path / "r.shard"
    write_shard(path, [V1(id="a"), V1(id="b")], V1)
    assert list(ShardReader(path, V2)) == [V2(id="a"), V2(id="b")]


def test_newer_schema_is_refused_with_upgrade_hint(tmp_path: Path) -> None:
    path = tmp_path / "s.shard"
    write_shard(path, samples(1), Sample, schema_version=SCHEMA_VERSION + 1)
    with pytest.raises(HaloError, match="upgrade halo-forge"):
        list(read_shards(path, Sample))


def test_appender_resumes_and_finishes(tmp_path: Path) -> None:
    path = tmp_path / "a.shard"
    with ShardAppender(path, Sample) as app:
        assert app.recovery is None
        for s in samples(10):
            app.append(s)
    with ShardAppender(path, Sample) as app:
        assert app.recovery.finished and app.recovery.kept_records == 10
        for s in samples(5, start=10):
            app.append(s)
    assert list(ShardReader(path, Sample)) == samples(15)


def test_appender_drops_a_torn_tail_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "a.shard"
    app = ShardAppender(path, Sample, frame_bytes=1 << 30)
    for s in samples(20):
        app.append(s)
    app.flush()
    for s in samples(20, start=20):
        app.append(s)
    app.flush()
    app._file.close()  # stop without close(): no END frame, as after a crash
    torn = b"DATA\x00\x10\x00\x00garbage-of-a-torn-frame"
    with open(path, "ab") as f:
        f.write(torn)
    with pytest.raises(ShardError, match="truncated"):
        list(ShardReader(path, Sample))
    app = ShardAppender(path, Sample)
    assert app.recovery.kept_records == 40 and app.recovery.kept_frames == 2
    assert app.recovery.dropped_bytes == len(torn)
    assert "dropped" in app.recovery.describe()
    app.append(samples(1, start=40)[0])
    app.close()
    assert list(ShardReader(path, Sample)) == samples(41)


_CHILD = textwrap.dedent(
    """
    import sys
    from halo_forge.records import Sample
    from halo_forge.shards import ShardAppender
    app = ShardAppender(sys.argv[1], Sample, frame_bytes=1 << 30)
    i = 0
    while True:
        for _ in range(25):
            app.append(Sample(id=str(i), problem_id="p", index=i, completion="y" * 200))
            i += 1
        app.flush()
        print(i, flush=True)
    """
)


def test_appender_survives_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "long.shard"
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    flushed = 0
    deadline = time.monotonic() + 60
    while flushed < 500 and time.monotonic() < deadline:
        flushed = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert flushed >= 500
    with pytest.raises(ShardError):  # unfinished: the strict reader refuses it
        list(ShardReader(path, Sample))
    app = ShardAppender(path, Sample)
    kept = app.recovery.kept_records
    assert kept >= flushed and kept % 25 == 0  # every reported flush survived, whole frames only
    app.close()
    indices = [s.index for s in ShardReader(path, Sample)]
    assert indices == list(range(kept))

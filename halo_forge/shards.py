"""Shard files: msgspec records, msgpack-encoded and zstd-compressed, checksummed per frame.

Layout of one shard file (all integers little-endian):

    b"HALOSHRD"                       file magic, 8 bytes
    frame HEAD   payload: msgpack ShardHeader (record type, schema version), uncompressed
    frame DATA   payload: zstd(msgpack array of records)        (zero or more)
    frame END    payload: msgpack {"records": n, "frames": m}  (only in a finished file)

    frame = tag (4 bytes) | payload length (u32) | record count (u32) | crc32 (u32) | payload

The crc32 covers the tag, the length, the count and the payload, so a torn or flipped header
is caught as well as a damaged payload. A file without its END frame was not finished: the
strict reader refuses it (naming the file and offset), `allow_partial=True` reads its complete
frames and reports what it dropped.

Writers:
- `ShardWriter`: a folder of shards of bounded size, each written to a temp file, fsynced and
  renamed into place when full, so a crash never leaves a half file under a final name.
- `ShardAppender`: one shard a long stage appends to; every flushed frame is fsynced, and
  reopening it after a kill -9 keeps every complete frame and says how much it dropped.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import msgspec
import zstandard

from halo_forge.atomic import atomic_open, fsync_dir
from halo_forge.errors import HaloError

FORMAT_VERSION = 1
MAGIC = b"HALOSHRD"
SUFFIX = ".shard"

_FRAME = struct.Struct("<4sIII")  # tag, payload length, record count, crc32
_TAG_HEAD = b"HEAD"
_TAG_DATA = b"DATA"
_TAG_END = b"END\0"
# A frame header claiming more than this is damage, not data (bounds memory on garbage).
_MAX_PAYLOAD = 1 << 31
DEFAULT_FRAME_BYTES = 1 << 20  # uncompressed records per frame: ~1 MiB
DEFAULT_SHARD_BYTES = 256 << 20
DEFAULT_LEVEL = 3

T = TypeVar("T", bound=msgspec.Struct)


class ShardError(HaloError):
    """A shard that cannot be read: names the file and the byte offset."""

    def __init__(self, path: Path | str, offset: int, what: str, hint: str = "") -> None:
        self.path = Path(path)
        self.offset = offset
        msg = f"{path}: {what} at byte {offset}"
        super().__init__(f"{msg}; {hint}" if hint else msg)


class ShardHeader(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    format: int = FORMAT_VERSION
    record_type: str
    schema_version: int
    compression: str = "zstd"


class _Footer(msgspec.Struct, frozen=True, kw_only=True):
    records: int
    frames: int


class Recovery(msgspec.Struct, frozen=True, kw_only=True):
    """What reading or reopening an unfinished shard kept and dropped."""

    kept_records: int
    kept_frames: int
    dropped_bytes: int  # bytes after the last complete frame (a torn or damaged tail)
    finished: bool  # the END frame was there

    def describe(self) -> str:
        if self.dropped_bytes == 0:
            return f"kept {self.kept_records} records in {self.kept_frames} frames, dropped nothing"
        return (
            f"kept {self.kept_records} records in {self.kept_frames} frames, dropped a "
            f"{self.dropped_bytes}-byte incomplete tail (the records of the frame being "
            f"written when the writer stopped)"
        )


_header_encoder = msgspec.msgpack.Encoder()
_header_decoder = msgspec.msgpack.Decoder(ShardHeader)
_footer_decoder = msgspec.msgpack.Decoder(_Footer)


def _schema_version_default() -> int:
    from halo_forge.records import SCHEMA_VERSION

    return SCHEMA_VERSION


def _frame(tag: bytes, payload: bytes, count: int) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(_FRAME.pack(tag, len(payload), count, 0)[:12]))
    return _FRAME.pack(tag, len(payload), count, crc) + payload


def _array_header(n: int) -> bytes:
    # msgpack array32: lets records be encoded one by one into a buffer and decoded as a list.
    return b"\xdd" + n.to_bytes(4, "big")


class _FrameBuilder:
    """Encodes records into a buffer and cuts DATA frames from it."""

    def __init__(self, record_type: type[msgspec.Struct], level: int) -> None:
        self.record_type = record_type
        self._encoder = msgspec.msgpack.Encoder()
        self._compressor = zstandard.ZstdCompressor(level=level)
        self._buf = bytearray()
        self.count = 0

    def add(self, record: msgspec.Struct) -> None:
        if type(record) is not self.record_type:
            raise TypeError(
                f"this shard holds {self.record_type.__name__} records, got {type(record).__name__}"
            )
        self._encoder.encode_into(record, self._buf, -1)
        self.count += 1

    @property
    def pending_bytes(self) -> int:
        return len(self._buf)

    def cut(self) -> bytes:
        """The DATA frame of the buffered records (b"" when none); empties the buffer."""
        if not self.count:
            return b""
        payload = self._compressor.compress(_array_header(self.count) + self._buf)
        frame = _frame(_TAG_DATA, payload, self.count)
        self._buf.clear()
        self.count = 0
        return frame


def _head_bytes(record_type: type[msgspec.Struct], schema_version: int) -> bytes:
    header = ShardHeader(record_type=record_type.__name__, schema_version=schema_version)
    return MAGIC + _frame(_TAG_HEAD, _header_encoder.encode(header), 0)


class ShardWriter:
    """Writes records into `directory/<prefix>-NNNNN.shard` files of at most ~`max_bytes`.

    Each file appears under its final name only once it is complete (temp file, fsync, rename,
    fsync of the folder). Use as a context manager: on an exception the unfinished file is
    removed, and the files already finished stay. `paths` lists the finished files.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        record_type: type[msgspec.Struct],
        *,
        prefix: str = "part",
        max_bytes: int = DEFAULT_SHARD_BYTES,
        frame_bytes: int = DEFAULT_FRAME_BYTES,
        level: int = DEFAULT_LEVEL,
        schema_version: int | None = None,
        start_index: int = 0,
    ) -> None:
        self.directory = Path(directory)
        self.record_type = record_type
        self.prefix = prefix
        self.max_bytes = max_bytes
        self.frame_bytes = frame_bytes
        self.schema_version = (
            _schema_version_default() if schema_version is None else schema_version
        )
        self.paths: list[Path] = []
        self.records_written = 0
        self._index = start_index
        self._frames = _FrameBuilder(record_type, level)
        self._file: BinaryIO | None = None
        self._tmp: Path | None = None
        self._size = 0
        self._file_records = 0
        self._file_frames = 0
        self._closed = False
        self.directory.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, record: msgspec.Struct) -> None:
        if self._closed:
            raise ValueError("ShardWriter is closed")
        self._frames.add(record)
        self.records_written += 1
        if self._frames.pending_bytes >= self.frame_bytes:
            self._flush_frame()

    def write_all(self, records: Iterable[msgspec.Struct]) -> None:
        for record in records:
            self.write(record)

    def _open(self) -> None:
        final = self.directory / f"{self.prefix}-{self._index:05d}{SUFFIX}"
        # Not atomic.atomic_open: a shard stays open across many writes and rolls over to the
        # next file by size, so the writer holds its temp file itself (same protocol: fsync,
        # rename, fsync the folder, in _finish_file).
        self._tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        self._file = open(self._tmp, "wb")
        self._file.write(_head_bytes(self.record_type, self.schema_version))
        self._size = self._file.tell()
        self._file_records = self._file_frames = 0

    def _flush_frame(self) -> None:
        count = self._frames.count
        frame = self._frames.cut()
        if not frame:
            return
        if self._file is None:
            self._open()
        assert self._file is not None
        self._file.write(frame)
        self._size += len(frame)
        self._file_records += count
        self._file_frames += 1
        if self._size >= self.max_bytes:
            self._finish_file()

    def _finish_file(self) -> None:
        assert self._file is not None and self._tmp is not None
        footer = _header_encoder.encode(
            _Footer(records=self._file_records, frames=self._file_frames)
        )
        self._file.write(_frame(_TAG_END, footer, self._file_records))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        final = self.directory / f"{self.prefix}-{self._index:05d}{SUFFIX}"
        os.replace(self._tmp, final)
        fsync_dir(self.directory)
        self.paths.append(final)
        self._file = self._tmp = None
        self._index += 1

    def close(self) -> list[Path]:
        """Finishes the last file; returns every file written. Writes no file for no records."""
        if self._closed:
            return self.paths
        self._flush_frame()
        if self._file is not None:
            self._finish_file()
        self._closed = True
        return self.paths

    def abort(self) -> None:
        """Drops the unfinished file (the finished ones stay)."""
        self._closed = True
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None


def write_shard(
    path: str | os.PathLike[str],
    records: Iterable[msgspec.Struct],
    record_type: type[msgspec.Struct],
    *,
    frame_bytes: int = DEFAULT_FRAME_BYTES,
    level: int = DEFAULT_LEVEL,
    schema_version: int | None = None,
) -> int:
    """Writes one shard file atomically (even with no records); returns the record count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    version = _schema_version_default() if schema_version is None else schema_version
    builder = _FrameBuilder(record_type, level)
    total = frames = 0
    with atomic_open(path) as f:
        f.write(_head_bytes(record_type, version))
        for record in records:
            builder.add(record)
            total += 1
            if builder.pending_bytes >= frame_bytes:
                f.write(builder.cut())
                frames += 1
        if builder.count:
            f.write(builder.cut())
            frames += 1
        footer = _header_encoder.encode(_Footer(records=total, frames=frames))
        f.write(_frame(_TAG_END, footer, total))
    return total


class _Scan(msgspec.Struct):
    header: ShardHeader
    frames: list[tuple[int, int, int]]  # (offset of the frame, payload length, record count)
    end_offset: int  # where the valid part ends (start of the END frame, or of the bad tail)
    finished: bool
    problem: ShardError | None  # why the file stops early (None when whole)


class ShardReader:
    """Streams the records of one shard file.

    `record_type=None` yields plain dicts/lists (for inspection, any record type);
    a Struct type yields Structs and refuses a shard of another record type.
    Strict by default: a truncated or damaged file raises ShardError naming file and offset.
    With `allow_partial=True` the complete frames are read and `recovery` says what was dropped.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        record_type: type[msgspec.Struct] | None = None,
        *,
        allow_partial: bool = False,
    ) -> None:
        self.path = Path(path)
        self.record_type = record_type
        self.allow_partial = allow_partial
        self.recovery: Recovery | None = None
        self.header = _read_header(self.path)
        if record_type is not None and self.header.record_type != record_type.__name__:
            raise HaloError(
                f"{self.path}: holds {self.header.record_type} records, expected "
                f"{record_type.__name__}; pass the right shard folder"
            )
        supported = _schema_version_default()
        if self.header.schema_version > supported:
            raise HaloError(
                f"{self.path}: schema version {self.header.schema_version} is newer than this "
                f"halo-forge understands ({supported}); upgrade halo-forge to read it"
            )
        item = Any if record_type is None else record_type
        self._decoder = msgspec.msgpack.Decoder(list[item])  # type: ignore[valid-type]

    def __iter__(self) -> Iterator[Any]:
        return self._records()

    def _records(self) -> Iterator[Any]:
        dctx = zstandard.ZstdDecompressor()
        kept_records = kept_frames = 0
        with open(self.path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(len(MAGIC))
            _read_frame(f, self.path, size, expect=_TAG_HEAD)
            while True:
                offset = f.tell()
                try:
                    tag, payload, count = _read_frame(f, self.path, size)
                    if tag == _TAG_END:
                        _check_footer(self.path, offset, payload, kept_records, kept_frames)
                        if f.tell() != size:
                            raise ShardError(
                                self.path, f.tell(), "unexpected bytes after the end frame"
                            )
                        self.recovery = Recovery(
                            kept_records=kept_records, kept_frames=kept_frames,
                            dropped_bytes=0, finished=True,
                        )
                        return
                    if tag != _TAG_DATA:
                        raise ShardError(self.path, offset, f"unknown frame tag {tag!r}")
                    records = self._decode(payload, count, offset, dctx)
                except ShardError as exc:
                    if not self.allow_partial:
                        raise
                    self.recovery = Recovery(
                        kept_records=kept_records, kept_frames=kept_frames,
                        dropped_bytes=size - offset, finished=False,
                    )
                    del exc
                    return
                kept_records += count
                kept_frames += 1
                yield from records

    def _decode(self, payload: bytes, count: int, offset: int, dctx) -> list[Any]:
        try:
            raw = dctx.decompress(payload)
        except zstandard.ZstdError as exc:
            raise ShardError(self.path, offset, f"undecompressable frame ({exc})") from None
        try:
            records = self._decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ShardError(
                self.path, offset, f"frame does not decode as {self.header.record_type} ({exc})"
            ) from None
        if len(records) != count:
            raise ShardError(self.path, offset, "frame record count does not match its header")
        return records


def _read_exact(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    return data


def _read_frame(
    f: BinaryIO, path: Path, size: int, *, expect: bytes | None = None
) -> tuple[bytes, bytes, int]:
    offset = f.tell()
    if offset == size and expect is None:
        raise ShardError(
            path, offset, "truncated shard: the end frame is missing (the writer did not finish)",
            "rerun the stage that writes it, or read its complete frames with --partial",
        )
    head = _read_exact(f, _FRAME.size)
    if len(head) < _FRAME.size:
        raise ShardError(
            path, offset, f"truncated shard: frame header cut after {len(head)} bytes",
            "rerun the stage that writes it, or read its complete frames with --partial",
        )
    tag, length, count, crc = _FRAME.unpack(head)
    if length > _MAX_PAYLOAD or (expect is not None and tag != expect):
        raise ShardError(path, offset, "corrupt shard: damaged frame header")
    if offset + _FRAME.size + length > size:
        raise ShardError(
            path, offset,
            f"truncated shard: frame needs {length} payload bytes, the file has "
            f"{size - offset - _FRAME.size}",
            "rerun the stage that writes it, or read its complete frames with --partial",
        )
    payload = _read_exact(f, length)
    if zlib.crc32(payload, zlib.crc32(head[:12])) != crc:
        raise ShardError(path, offset, "corrupt shard: frame checksum mismatch")
    return tag, payload, count


def _read_header(path: Path) -> ShardHeader:
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise HaloError(f"{path}: cannot open shard ({exc.strerror})") from None
    with f:
        magic = f.read(len(MAGIC))
        if magic != MAGIC:
            raise ShardError(
                path, 0, "not a halo-forge shard (bad magic)",
                "pass a .shard file written by halo-forge",
            )
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(len(MAGIC))
        _, payload, _ = _read_frame(f, path, size, expect=_TAG_HEAD)
    try:
        header = _header_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ShardError(path, len(MAGIC), f"corrupt shard header ({exc})") from None
    if header.format > FORMAT_VERSION:
        raise HaloError(
            f"{path}: shard format {header.format} is newer than this halo-forge reads "
            f"({FORMAT_VERSION}); upgrade halo-forge"
        )
    return header


def _check_footer(path: Path, offset: int, payload: bytes, records: int, frames: int) -> None:
    try:
        footer = _footer_decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise ShardError(path, offset, "corrupt shard: unreadable end frame") from None
    if (footer.records, footer.frames) != (records, frames):
        raise ShardError(
            path, offset,
            f"corrupt shard: end frame counts {footer.records} records in {footer.frames} "
            f"frames, the file holds {records} in {frames}",
        )


def _scan(path: Path) -> _Scan:
    """Walks the frames without decoding records: the valid prefix of a file."""
    header = _read_header(path)
    frames: list[tuple[int, int, int]] = []
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(len(MAGIC))
        _read_frame(f, path, size, expect=_TAG_HEAD)
        while True:
            offset = f.tell()
            try:
                tag, payload, count = _read_frame(f, path, size)
                if tag == _TAG_END:
                    records = sum(c for _, _, c in frames)
                    _check_footer(path, offset, payload, records, len(frames))
                    finished = f.tell() == size
                    problem = None if finished else ShardError(
                        path, f.tell(), "unexpected bytes after the end frame"
                    )
                    return _Scan(header, frames, offset, finished, problem)
                if tag != _TAG_DATA:
                    raise ShardError(path, offset, f"unknown frame tag {tag!r}")
            except ShardError as exc:
                return _Scan(header, frames, offset, False, exc)
            frames.append((offset, len(payload), count))


def shard_paths(path: str | os.PathLike[str]) -> list[Path]:
    """A shard file, or the `*.shard` files of a folder in name order."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p for p in path.glob(f"*{SUFFIX}") if not p.name.startswith("."))
        if not found:
            raise HaloError(f"{path}: no {SUFFIX} files in this folder")
        return found
    if not path.exists():
        raise HaloError(f"{path}: no such shard file or folder")
    return [path]


def read_shards(
    path: str | os.PathLike[str],
    record_type: type[T] | None = None,
    *,
    allow_partial: bool = False,
) -> Iterator[Any]:
    """Streams the records of a shard file or of every shard in a folder."""
    for p in shard_paths(path):
        yield from ShardReader(p, record_type, allow_partial=allow_partial)


def shard_header(path: str | os.PathLike[str]) -> ShardHeader:
    return _read_header(Path(path))


class ShardAppender:
    """One shard file that a long stage appends to, frame by frame, across restarts.

    Every `flush()` (and every ~`frame_bytes` of records) writes one frame and fsyncs it, so
    after a kill -9 the file holds every flushed record. Reopening the file truncates a torn
    tail and the END frame, keeps every complete frame, and sets `recovery` (kept records,
    dropped bytes). `close()` writes the END frame: only then does the strict reader accept
    the file as whole.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        record_type: type[msgspec.Struct],
        *,
        frame_bytes: int = DEFAULT_FRAME_BYTES,
        level: int = DEFAULT_LEVEL,
        schema_version: int | None = None,
        fsync: bool = True,
    ) -> None:
        self.path = Path(path)
        self.record_type = record_type
        self.frame_bytes = frame_bytes
        self.fsync = fsync
        self._frames = _FrameBuilder(record_type, level)
        version = _schema_version_default() if schema_version is None else schema_version
        self.recovery: Recovery | None = None
        self.records = 0  # records in the file, including those of earlier runs
        self._frame_count = 0
        if self.path.exists():
            scan = _scan(self.path)
            if scan.header.record_type != record_type.__name__:
                raise HaloError(
                    f"{self.path}: holds {scan.header.record_type} records, cannot append "
                    f"{record_type.__name__}; use another file"
                )
            self.records = sum(c for _, _, c in scan.frames)
            self._frame_count = len(scan.frames)
            size = self.path.stat().st_size
            dropped = 0 if scan.finished else size - scan.end_offset
            self.recovery = Recovery(
                kept_records=self.records, kept_frames=self._frame_count,
                dropped_bytes=dropped, finished=scan.finished,
            )
            self._file = open(self.path, "r+b")
            self._file.truncate(scan.end_offset)
            self._file.seek(scan.end_offset)
            self._sync()
        else:
            # Create the empty shard atomically so a crash here never leaves a headerless file.
            write_shard(self.path, (), record_type, schema_version=version)
            self._file = open(self.path, "r+b")
            self._file.truncate(_scan(self.path).end_offset)
            self._file.seek(0, os.SEEK_END)
            self._sync()

    def __enter__(self) -> ShardAppender:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # On an exception the flushed frames stay and the file stays open-ended (resumable).
        if exc_type is None:
            self.close()
        else:
            self._file.close()

    def _sync(self) -> None:
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())

    def append(self, record: msgspec.Struct) -> None:
        self._frames.add(record)
        if self._frames.pending_bytes >= self.frame_bytes:
            self.flush()

    def flush(self) -> None:
        """Writes the buffered records as one frame and makes it durable."""
        count = self._frames.count
        frame = self._frames.cut()
        if not frame:
            return
        self._file.write(frame)
        self._sync()
        self.records += count
        self._frame_count += 1

    def close(self) -> None:
        if self._file.closed:
            return
        self.flush()
        footer = _header_encoder.encode(_Footer(records=self.records, frames=self._frame_count))
        self._file.write(_frame(_TAG_END, footer, self.records))
        self._sync()
        self._file.close()

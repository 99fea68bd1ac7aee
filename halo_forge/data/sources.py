"""Where dataset rows come from: the Hugging Face hub (through `datasets`) or a local copy.

A local copy is a JSONL file (optionally .gz), a Parquet file, a folder of those, or a folder
written by `datasets.Dataset.save_to_disk` / `DatasetDict.save_to_disk`. Rows are plain dicts
in the source's own schema; the loaders turn them into Problems.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from halo_forge.data import jsonl
from halo_forge.errors import HaloError

_JSONL = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
_PARQUET = (".parquet",)


def _is(path: Path, suffixes: tuple[str, ...]) -> bool:
    return any(path.name.endswith(s) for s in suffixes)


def read_parquet(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        for batch in pf.iter_batches(batch_size=1024):
            yield from batch.to_pylist()
    except (OSError, ValueError) as exc:  # pyarrow.ArrowInvalid is a ValueError
        raise HaloError(f"{path}: unreadable Parquet ({exc})") from None


def _saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").exists() or (path / "state.json").exists()


def _read_saved(path: Path, splits: Sequence[str] | None) -> Iterator[dict[str, Any]]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:  # noqa: BLE001 - datasets raises many types for a bad folder
        raise HaloError(f"{path}: not a readable saved dataset ({exc})") from None
    if isinstance(loaded, datasets.DatasetDict):
        names = [s for s in loaded if splits is None or s in splits] or list(loaded)
        for name in names:
            yield from loaded[name]
    else:
        yield from loaded


def read_local(path: str | Path, *, splits: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
    """Rows of a local copy. `splits` selects the splits of a saved DatasetDict (all if None)."""
    path = Path(path)
    if not path.exists():
        raise HaloError(f"{path}: no such file or folder (--from expects JSONL, Parquet or a "
                        "saved dataset folder)")
    if path.is_dir():
        if _saved_dataset(path):
            yield from _read_saved(path, splits)
            return
        files = sorted(p for p in path.rglob("*") if _is(p, _JSONL + _PARQUET))
        if not files:
            raise HaloError(f"{path}: no .jsonl or .parquet files and not a saved dataset folder")
        for f in files:
            yield from read_local(f)
        return
    if _is(path, _PARQUET):
        yield from read_parquet(path)
    elif _is(path, _JSONL):
        yield from (row for _, row in jsonl.read_jsonl(path))
    else:
        raise HaloError(f"{path}: unknown file type; use .jsonl, .jsonl.gz or .parquet")


def read_hub(
    repo: str, *, config: str | None, splits: Sequence[str], local_hint: str
) -> Iterator[dict[str, Any]]:
    """Rows of a hub dataset through `datasets.load_dataset` (cached copies work offline)."""
    import datasets

    for split in splits:
        try:
            ds = datasets.load_dataset(repo, config, split=split)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - hub errors come in many types
            where = f"{repo}" + (f" ({config})" if config else "")
            if isinstance(exc, (ConnectionError, OSError, TimeoutError)):
                raise HaloError(
                    f"cannot reach the Hugging Face hub for {where}: {_short(exc)}; download it "
                    f"where there is network and pass --from PATH ({local_hint})"
                ) from None
            raise HaloError(
                f"cannot load {where} split {split!r}: {_short(exc)}; pass a local copy with "
                f"--from PATH ({local_hint})"
            ) from None
        yield from ds


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."

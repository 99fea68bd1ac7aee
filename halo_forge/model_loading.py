"""Loading base models, tokenizers and LoRA adapters, with one-line errors instead of tracebacks.

A model is a Hugging Face id or a local folder. An adapter folder (what `sft train` and each
RAFT cycle write) carries `halo_forge_adapter.json` naming its base model, so a later stage
needs only the adapter's path: `resolve(model="", adapter=DIR)` finds the base.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import msgspec

from halo_forge.atomic import write_atomic
from halo_forge.errors import HaloError

ADAPTER_META = "halo_forge_adapter.json"


class AdapterMeta(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Written beside a saved adapter: what it was trained from and how it went."""

    base_model: str
    created_unix: float = 0.0
    halo_forge_version: str = ""
    parent_adapter: str = ""  # the adapter this one continued training from ("" = fresh LoRA)
    lora_rank: int = 0
    lora_alpha: float = 0.0
    target_modules: list[str] | str = []
    learning_rate: float = 0.0
    epochs: float = 0.0
    global_step: int = 0
    train_examples: int = 0
    eval_examples: int = 0
    train_loss: float | None = None
    eval_loss: float | None = None


def is_adapter_dir(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def portable_model_name(name: str) -> str:
    """A local folder as an absolute path, so that whoever reads it, from whatever working
    directory, finds it; a hub id (not a folder here) unchanged."""
    if name and Path(name).exists():
        return str(Path(name).resolve())
    return name


def _beside(adapter_dir: Path, name: str) -> str:
    """A relative folder that an older version recorded as typed: found from here, or else
    from the adapter's own folder up (where `../x/model` was typed); otherwise unchanged."""
    if not name or Path(name).is_absolute() or Path(name).exists():
        return name
    for folder in (adapter_dir, *adapter_dir.resolve().parents):
        if (folder / name).is_dir():
            return str((folder / name).resolve())
    return name


def write_adapter_meta(adapter_dir: Path, meta: AdapterMeta) -> None:
    meta.created_unix = meta.created_unix or time.time()
    # The path as typed (`../runs/x/model`) only works from where it was typed.
    meta.base_model = portable_model_name(meta.base_model)
    meta.parent_adapter = portable_model_name(meta.parent_adapter)
    write_atomic(adapter_dir / ADAPTER_META, msgspec.json.format(msgspec.json.encode(meta)))


def read_adapter_meta(adapter_dir: str | os.PathLike[str]) -> AdapterMeta:
    """The adapter's metadata; for an adapter trained elsewhere, peft's own base model name."""
    path = Path(adapter_dir)
    if not is_adapter_dir(path):
        raise HaloError(f"{path}: not a LoRA adapter folder (no adapter_config.json); pass the "
                        "folder `sft train` wrote (DIR/final_model)")
    meta_path = path / ADAPTER_META
    if meta_path.is_file():
        try:
            meta = msgspec.json.decode(meta_path.read_bytes(), type=AdapterMeta)
        except msgspec.DecodeError as exc:
            raise HaloError(f"{meta_path}: unreadable adapter metadata ({exc})") from None
        meta.base_model = _beside(path, meta.base_model)
        return meta
    try:
        cfg = msgspec.json.decode((path / "adapter_config.json").read_bytes())
    except msgspec.DecodeError as exc:
        raise HaloError(f"{path}/adapter_config.json: not JSON ({exc})") from None
    base = cfg.get("base_model_name_or_path") if isinstance(cfg, dict) else None
    if not base:
        raise HaloError(f"{path}: the adapter does not name its base model; pass --model")
    return AdapterMeta(base_model=str(base))


def resolve(model: str, adapter: str) -> tuple[str, str]:
    """(base model, adapter) from what the user gave: a model that is an adapter folder is read
    as the adapter, and an adapter without a model brings its base model along."""
    if model and is_adapter_dir(model) and not adapter:
        model, adapter = "", model
    if adapter:
        base = read_adapter_meta(adapter).base_model
        if not model:
            model = base
    if not model:
        raise HaloError("no model given: pass --model (a Hugging Face id or a local folder)")
    return model, adapter


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


def _offline() -> bool:
    return bool(os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE"))


def _download_hint(name: str) -> str:
    # `hf` is the command huggingface_hub ships now; `huggingface-cli` is gone from it.
    return f"download it first (`hf download {name}`) or pass a local model folder"


_reachable: dict[str, bool] = {}


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether a TCP connection to the hub's endpoint opens within `timeout_s` (once per
    process): offline, transformers would otherwise retry for about a minute before failing."""
    import socket
    from urllib.parse import urlsplit

    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    if endpoint not in _reachable:
        url = urlsplit(endpoint)
        port = url.port or (80 if url.scheme == "http" else 443)
        try:
            socket.create_connection((url.hostname or "", port), timeout=timeout_s).close()
            _reachable[endpoint] = True
        except OSError:
            _reachable[endpoint] = False
    return _reachable[endpoint]


def _in_hub_cache(name: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # noqa: BLE001 - not a valid repo id: certainly not cached
        return False


def _hub_kwargs(kind: str, name: str) -> dict[str, Any]:
    """from_pretrained's extra arguments for `name`; fails at once for a hub id that is
    neither cached nor reachable, and reads a cached one without asking the hub."""
    if Path(name).exists() or _offline():
        return {}
    if hub_reachable():
        return {}
    if _in_hub_cache(name):
        return {"local_files_only": True}
    raise HaloError(f"cannot load {kind} {name!r}: it is not a local folder, not in the local "
                    "cache, and the hub is unreachable (no network?); " + _download_hint(name))


def _load_error(kind: str, name: str, exc: BaseException) -> HaloError:
    if Path(name).exists():
        return HaloError(f"cannot load {kind} from {name} ({_short(exc)}); is it a complete "
                         "Hugging Face model folder?")
    how = ("HF_HUB_OFFLINE is set, so only the local cache is searched" if _offline() else
           "it is not a local folder and could not be fetched from the hub")
    return HaloError(f"cannot load {kind} {name!r}: {how} ({_short(exc)}); " + _download_hint(name))


def load_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    kwargs = _hub_kwargs("tokenizer", name)
    try:
        tok = AutoTokenizer.from_pretrained(name, **kwargs)
    except Exception as exc:  # noqa: BLE001 - transformers raises many types for "not found"
        raise _load_error("tokenizer", name, exc) from None
    if tok.pad_token is None:  # many base models ship without one; padding is masked anyway
        tok.pad_token = tok.eos_token
    return tok


def _dtype_kw() -> str:
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def pick_dtype(setting: str, *, training: bool) -> Any:
    """"auto": bf16 on GPUs that have it; fp16 for inference on older GPUs; fp32 on CPU."""
    import torch

    if setting != "auto":
        return {"bfloat16": torch.bfloat16, "float16": torch.float16,
                "float32": torch.float32}[setting]
    if torch.cuda.is_available():
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16
        # Training keeps fp32 master weights (the Trainer adds fp16 autocast).
        return torch.float32 if training else torch.float16
    return torch.float32


# Models at most this wide run torch on one CPU thread (fit_cpu_threads).
NARROW_HIDDEN = 256


def fit_cpu_threads(model: Any, device: Any) -> None:
    """One torch thread for a narrow model on CPU (the tiny recipe's 64-wide one).

    Its matrices are too small for threads to share; OpenMP's threads then spin while the
    verifier's compilers hold the cores: the CPU recipe took 3.4x the CPU time with torch's
    default threads than with one (1209 vs 356 s, 2 cores at load 3-10). Wide models, and
    every model on a GPU, keep torch's default."""
    import torch

    hidden = getattr(getattr(model, "config", None), "hidden_size", None)
    if str(device).startswith("cpu") and isinstance(hidden, int) and hidden <= NARROW_HIDDEN:
        torch.set_num_threads(1)


def load_causal_lm(name: str, *, dtype: Any) -> Any:
    from transformers import AutoModelForCausalLM

    kwargs = _hub_kwargs("model", name)
    try:
        return AutoModelForCausalLM.from_pretrained(name, **{_dtype_kw(): dtype}, **kwargs)
    except Exception as exc:  # noqa: BLE001
        raise _load_error("model", name, exc) from None

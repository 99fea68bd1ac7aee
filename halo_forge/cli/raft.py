"""`halo-forge raft train`: RAFT cycles from a checkpoint on a prompts file.

    halo-forge raft train --checkpoint DIR --prompts FILE --verifier gcc --cycles 5 \\
        --samples-per-prompt 8 --reward-threshold 0.5 --keep-top-percent 0.5 --output DIR

This is `halo-forge run` (pipeline.py) with the SFT stage off: the flags become a
PipelineConfig (data.prompts = FILE, sft.adapter = the checkpoint, no benchmark unless
--benchmark), so the outputs, the resume after a crash and the refusal of a changed config are
the ones `run` has: DIR/cycle_N_final, DIR/raft/cycle_N/*.shard, DIR/metrics.jsonl. With
--config the rest comes from a pipeline.toml; a flag overrides the file only when it is given.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import msgspec

from halo_forge.argtypes import positive_int
from halo_forge.cli.cluster import add_ray_address, ray_address
from halo_forge.cli.flags import add_struct_flags, given, spellings
from halo_forge.cli.parser import add_group
from halo_forge.config import section_type
from halo_forge.errors import HaloError
from halo_forge.generate.base import ENGINES, VLLMConfig

# (section, its Struct's fields given as flags, other spellings): the flags come from the
# pipeline.toml sections themselves, so their defaults and help are the file's.
_SECTIONS: tuple[tuple[str, tuple[str, ...] | None, dict[str, tuple[str, ...]]], ...] = (
    ("raft", None, {"learning_rate": ("--lr",)}),
    ("generation", ("temperature", "top_p", "max_new_tokens"), {}),
    ("verifier", ("verifier", "concurrency"), {}),
    ("output", ("progress",), {}),
    ("data", ("language",), {}),
)




def register(subparsers) -> None:
    sub = add_group(subparsers, "raft", help="RAFT: generate, verify, filter, train, repeat")
    p = sub.add_parser(
        "train", help="RAFT cycles from a checkpoint on a prompts file (resumable)",
        description="Run RAFT cycles (generate N samples per prompt, verify them in the "
                    "sandbox, keep the best, train the LoRA adapter on them) starting from "
                    "--checkpoint. The same run as `halo-forge run` with SFT off: rerun the same "
                    "command to resume after a crash, kill or Ctrl-C. Writes "
                    "OUTPUT/cycle_N_final (the adapter after cycle N), OUTPUT/raft/cycle_N/ "
                    "(samples, verdicts and kept shards) and OUTPUT/metrics.jsonl.")
    p.add_argument("--checkpoint", metavar="DIR",
                   help="where to start: a LoRA adapter folder (an `sft train` run folder or its "
                        "final_model, a cycle_N_final) or a base model (local folder or hub id)")
    p.add_argument("--model", metavar="NAME",
                   help="base model: with an adapter --checkpoint, overrides the base it names; "
                        "without --checkpoint, RAFT starts from this base model")
    p.add_argument("--prompts", metavar="FILE",
                   help="problems JSONL from `halo-forge data prepare --prompts` (or a Problem "
                        "shard); every problem is a training prompt")
    p.add_argument("--output", metavar="DIR", help="run folder (overrides output.dir)")
    p.add_argument("--config", metavar="TOML",
                   help="a pipeline.toml for everything not given as a flag (sft is turned off "
                        "and the benchmark only runs with --benchmark)")
    for section, only, aliases in _SECTIONS:
        add_struct_flags(p, section_type(section), only=only, aliases=aliases,
                         types_={"concurrency": positive_int}, dest_prefix=f"{section}.")
    p.add_argument("--backend", choices=tuple(ENGINES), default=None,
                   help="generation backend (default transformers; vllm on GPUs)")
    add_struct_flags(p, VLLMConfig, only=("max_lora_rank",), dest_prefix="engine.")
    add_ray_address(p)
    p.add_argument("--benchmark", action="store_true",
                   help="run the benchmark stage after the cycles (needs a held-out split, so a "
                        "--config with a dataset rather than --prompts)")
    p.set_defaults(handler=_train)


def _train(args) -> int:
    from halo_forge.cli.run import run_config

    config, text = build_config(args)
    return run_config(config, config_text=text)


# --- flags -> PipelineConfig ------------------------------------------------------------------

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_checkpoint(checkpoint: str | None, model: str | None) -> tuple[str, str]:
    """(base model, adapter or "") from --checkpoint and --model."""
    from halo_forge.model_loading import is_adapter_dir, read_adapter_meta

    if not checkpoint:
        if not model:
            raise HaloError("raft train: pass --checkpoint DIR (an adapter or a base model) "
                            "or --model NAME")
        return model, ""
    p = Path(checkpoint).expanduser()
    if not p.exists():
        # A hub id looks like a relative path; it is one only when its first part is no folder.
        if _HUB_ID.match(checkpoint) and not Path(checkpoint.split("/")[0]).exists():
            return _base_only(checkpoint, model)
        raise HaloError(f"--checkpoint {checkpoint}: no such folder")
    if not p.is_dir():
        raise HaloError(f"--checkpoint {checkpoint}: not a folder (pass an adapter or model "
                        "folder)")
    # An `sft train` run folder holds its adapter in final_model.
    for candidate in (p, p / "final_model"):
        if is_adapter_dir(candidate):
            adapter = str(candidate.resolve())
            return (model or read_adapter_meta(adapter).base_model), adapter
    if (p / "config.json").is_file():
        return _base_only(str(p.resolve()), model)
    raise HaloError(f"--checkpoint {checkpoint}: neither a LoRA adapter (no adapter_config.json) "
                    "nor a model folder (no config.json)")


def _base_only(base: str, model: str | None) -> tuple[str, str]:
    if model and model != base:
        raise HaloError(f"--checkpoint {base} is a base model, so --model {model} has nothing "
                        "to apply to; pass one of them")
    return base, ""


def build_config(args: argparse.Namespace) -> tuple[Any, str]:
    """(PipelineConfig, text of --config or "") from the parsed flags."""
    from halo_forge.config import (
        PipelineConfig,
        adapter_lora_rank,
        check_lora_rank,
        explain,
        load_config,
    )

    text = ""
    if args.config:
        base_config, text = load_config(args.config)
        data = msgspec.to_builtins(base_config)
    else:
        missing = [f for f, v in (("--prompts", args.prompts), ("--output", args.output)) if not v]
        if missing:
            raise HaloError(f"raft train: pass {' and '.join(missing)} (or --config "
                            "pipeline.toml)")
        data = {}
    flags: dict[str, str] = {}  # config key -> the flag that set it, for error messages

    def put(key: str, value: Any, flag: str) -> None:
        section, name = key.split(".")
        data.setdefault(section, {})[name] = value
        flags[key] = flag

    if args.checkpoint or args.model:
        base, adapter = resolve_checkpoint(args.checkpoint, args.model)
        data["model"] = {"name": base}  # replaces the section: a tiny model is not the base
        flags["model.name"] = "--checkpoint/--model"
        put("sft.adapter", adapter, "--checkpoint")
    elif "model" not in data:
        raise HaloError("raft train: pass --checkpoint DIR (an adapter or a base model)")
    # raft train starts from a checkpoint; SFT is `halo-forge sft train` or `run`.
    data.setdefault("sft", {})["enabled"] = False
    put("benchmark.enabled", bool(args.benchmark), "--benchmark")
    if args.prompts:
        prompts = Path(args.prompts).expanduser()
        if not prompts.exists():
            raise HaloError(f"--prompts {args.prompts}: no such file; write one with "
                            "`halo-forge data prepare --dataset NAME --prompts FILE`")
        # Absolute: the run's recorded config must name the same file from any directory.
        put("data.prompts", str(prompts.resolve()), "--prompts")
    if args.output:
        put("output.dir", args.output, "--output")
    for section, _, aliases in _SECTIONS:
        for name, value in given(section_type(section), args, dest_prefix=f"{section}.").items():
            put(f"{section}.{name}", value, spellings(name, aliases)[0])
    if ray_address(args) is not None:
        put("cluster.address", ray_address(args), "--ray-address")
    if args.backend is not None:
        engine = data.setdefault("generation", {}).get("engine") or {}
        if engine.get("backend", "transformers") != args.backend:
            # Another backend's keys do not carry over; its defaults apply.
            data["generation"]["engine"] = {"backend": args.backend}
        flags["generation.engine"] = "--backend"
    if args.__dict__.get("engine.max_lora_rank") is not None:
        engine = data.setdefault("generation", {}).setdefault("engine", {})
        if engine.get("backend", "transformers") != "vllm":
            raise HaloError("--max-lora-rank is a vllm setting: add --backend vllm")
        engine["max_lora_rank"] = args.__dict__["engine.max_lora_rank"]
        flags["generation.engine"] = "--max-lora-rank"
    try:
        config = msgspec.convert(data, PipelineConfig)
    except msgspec.ValidationError as exc:
        message = explain(exc, "raft train")
        # Name the flag beside the key it set.
        for key, flag in flags.items():
            message = re.sub(rf"(?<![\w.]){re.escape(key)}(?![\w])", f"{flag} ({key})", message,
                             count=1)
        raise HaloError(message) from None
    if config.sft.adapter:
        # RAFT continues the checkpoint's adapter, so its own rank is what vLLM must serve.
        try:
            check_lora_rank(adapter_lora_rank(config.sft.adapter), config.generation.engine,
                            key=f"--checkpoint {config.sft.adapter}: the adapter's rank")
        except ValueError as exc:
            raise HaloError(f"raft train: {exc}".replace("generation.engine.max_lora_rank",
                                                         "--max-lora-rank")) from None
    if config.data.prompts:
        check_prompts(config)
    return config, text


def check_prompts(config: Any) -> None:
    """Fail before any model is loaded when the prompts cannot be verified as configured: a
    language the chosen verifier does not run, or a missing compiler."""
    from halo_forge.pipeline import load_prompts
    from halo_forge.verify.toolchains import resolve_toolchain

    problems = load_prompts(config.data.prompts,
                            language=config.data.default_language())
    if config.data.languages:
        problems = [p for p in problems if p.language in config.data.languages]
    if not problems:
        raise HaloError(f"{config.data.prompts}: no prompts"
                        + (f" in {', '.join(config.data.languages)}" if config.data.languages
                           else ""))
    v = config.verifier
    languages = sorted({p.language for p in problems})
    unhandled = [lang for lang in languages if lang not in v.languages]
    if unhandled:
        raise HaloError(f"{config.data.prompts} holds {', '.join(unhandled)} problems but "
                        f"--verifier {v.verifier} runs {', '.join(v.languages)}: use --verifier "
                        "auto, or a prompts file of those languages only")
    for language in languages:
        resolve_toolchain(language, v.compiler(language))


__all__ = ["register", "build_config", "resolve_checkpoint"]

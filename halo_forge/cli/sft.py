"""`halo-forge sft train`: LoRA SFT on JSONL or shards (see halo_forge/train.py).

One GPU or CPU needs no launcher; several GPUs run the same command under accelerate:
    accelerate launch --num_processes 4 -m halo_forge sft train --data D --output O
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from halo_forge.cli.flags import add_struct_flags, struct_from_args
from halo_forge.cli.parser import add_group
from halo_forge.errors import HaloError
from halo_forge.paths import check_output_dir
from halo_forge.train import SFTConfig


def register(subparsers) -> None:
    sub = add_group(subparsers, "sft", help="LoRA supervised fine-tuning")
    p = sub.add_parser(
        "train", help="train a LoRA adapter on chat examples",
        description="Train a LoRA adapter (loss on the assistant's answer only). The adapter "
                    "lands in OUTPUT/final_model with the tokenizer and a metadata file naming "
                    "the base model.")
    p.add_argument("--data", required=True,
                   help="JSONL ({\"text\": ...} in the chat template, or {\"messages\": [...]}) "
                        "or a shard file/folder of Example or Problem records")
    p.add_argument("--output", required=True, help="run folder: checkpoints and final_model")
    p.add_argument("--model", default="", help="base model: Hugging Face id or local folder "
                   "(default: the base of --adapter)")
    p.add_argument("--adapter", default="", help="continue training this LoRA adapter")
    # Every setting of train.SFTConfig, made from its fields (sft_settings.py).
    add_struct_flags(p, SFTConfig, exclude=("model", "init_adapter"),
                     aliases={"learning_rate": ("--lr",)})
    # Rerunning the same command resumes by itself (as `raft train` and `run` do); the flag
    # stays so that scripts written for the old behaviour keep working.
    p.add_argument("--resume", action="store_true",
                   help="accepted for compatibility: rerunning the command resumes anyway")
    p.set_defaults(handler=_train)


def _interrupted_run(out: Path, log) -> bool:
    """Whether --output holds a run to continue: any checkpoint, finished or not (a finished
    run resumed with a higher --max-steps trains on; otherwise it trains no further step)."""
    from halo_forge import checkpoints
    from halo_forge.train import FINAL_DIR

    if checkpoints.checkpoints(out):
        log(f"sft train: continuing the run in {out} from its last checkpoint")
        return True
    if (out / FINAL_DIR).exists():
        raise HaloError(f"sft train --output {out}: holds a finished run without checkpoints "
                        f"(adapter in {out / FINAL_DIR}); choose a new --output to train again")
    return False


def _same_place(a: str, b: str) -> bool:
    import os

    return os.path.realpath(a) == os.path.realpath(b)


def build_sft_config(args: argparse.Namespace) -> SFTConfig:
    """The training run's SFTConfig: the flags given, the settings' defaults for the rest."""
    import msgspec

    try:
        return struct_from_args(SFTConfig, args, model=args.model, init_adapter=args.adapter)
    except (ValueError, msgspec.ValidationError) as exc:
        raise HaloError(f"sft train: {exc}") from None


def _train(args: argparse.Namespace) -> int:
    from halo_forge.train_process import Trainer

    config = build_sft_config(args)

    def log(line: str) -> None:
        print(line, file=sys.stderr)

    check_output_dir(args.output, what="sft train --output")
    if _same_place(args.output, args.data):
        raise HaloError(f"sft train --output {args.output}: is the --data folder; checkpoints "
                        "would mix with the training data, so choose another folder")
    resume = _interrupted_run(Path(args.output), log)
    # --train-process: a child hands the GPU back when it exits (auto: on CUDA, no launcher).
    result = Trainer(mode=config.train_process, log=log, capture=False).run(
        config, data=args.data, output_dir=args.output, resume=resume)
    loss = f"{result.first_loss:.4f} -> {result.last_loss:.4f}" if result.first_loss else "n/a"
    log(f"trained {result.global_step} steps on {result.train_examples} examples "
        f"({result.skipped_examples} skipped); train loss {loss}"
        + (f"; eval loss {result.eval_loss:.4f}" if result.eval_loss is not None else ""))
    log(f"adapter: {result.adapter_dir} (base model {result.base_model})")
    return 0

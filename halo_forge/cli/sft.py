"""`halo-forge sft train`: LoRA SFT on JSONL or shards (see halo_forge/train.py).

One GPU or CPU needs no launcher; several GPUs run the same command under accelerate:
    accelerate launch --num_processes 4 -m halo_forge sft train --data D --output O
"""

from __future__ import annotations

import sys

from halo_forge.cli.parser import add_group
from halo_forge.errors import HaloError
from halo_forge.paths import check_output_dir


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
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--max-steps", type=int, default=0, help="stop after N optimizer steps")
    p.add_argument("--lr", "--learning-rate", dest="learning_rate", type=float, default=2e-4)
    p.add_argument("--warmup-ratio", type=float, default=0.03,
                   help="warmup as a fraction of the optimizer steps (always fewer than them)")
    p.add_argument("--batch-size", type=int, default=4, help="per device")
    p.add_argument("--grad-accum", type=int, default=4)
    p.add_argument("--max-length", type=int, default=2048, help="tokens per example")
    p.add_argument("--lora-rank", type=int, default=16)
    p.add_argument("--lora-alpha", type=float, default=32.0)
    p.add_argument("--lora-dropout", type=float, default=0.05)
    p.add_argument("--target-modules", default="",
                   help="comma-separated module names (default: per architecture)")
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="trade compute for memory (long sequences, big models)")
    p.add_argument("--dtype", choices=("auto", "bfloat16", "float16", "float32"), default="auto",
                   help="auto: bf16 on GPUs that support it, else fp32 (+fp16 autocast on GPU)")
    p.add_argument("--eval-fraction", type=float, default=0.05, help="held out for eval loss")
    p.add_argument("--eval-steps", type=int, default=0, help="0: once per epoch")
    p.add_argument("--save-steps", type=int, default=0, help="0: a checkpoint per epoch")
    p.add_argument("--save-total-limit", type=int, default=2)
    p.add_argument("--logging-steps", type=int, default=10)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_train)


def _same_place(a: str, b: str) -> bool:
    import os

    return os.path.realpath(a) == os.path.realpath(b)


def _train(args) -> int:
    from halo_forge.train import SFTConfig, train

    try:
        config = SFTConfig(
            model=args.model, init_adapter=args.adapter, epochs=args.epochs,
            max_steps=args.max_steps, learning_rate=args.learning_rate,
            warmup_ratio=args.warmup_ratio, batch_size=args.batch_size,
            grad_accum=args.grad_accum, max_length=args.max_length, lora_rank=args.lora_rank,
            lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
            target_modules=[m.strip() for m in args.target_modules.split(",") if m.strip()],
            gradient_checkpointing=args.gradient_checkpointing, dtype=args.dtype,
            eval_fraction=args.eval_fraction, eval_steps=args.eval_steps,
            save_steps=args.save_steps, save_total_limit=args.save_total_limit,
            logging_steps=args.logging_steps, seed=args.seed, progress=not args.no_progress,
        )
    except ValueError as exc:
        raise HaloError(f"sft train: {exc}") from None

    def log(line: str) -> None:
        print(line, file=sys.stderr)

    check_output_dir(args.output, what="sft train --output")
    if _same_place(args.output, args.data):
        raise HaloError(f"sft train --output {args.output}: is the --data folder; checkpoints "
                        "would mix with the training data, so choose another folder")
    result = train(config, data=args.data, output_dir=args.output, resume=args.resume, log=log)
    loss = f"{result.first_loss:.4f} -> {result.last_loss:.4f}" if result.first_loss else "n/a"
    log(f"trained {result.global_step} steps on {result.train_examples} examples "
        f"({result.skipped_examples} skipped); train loss {loss}"
        + (f"; eval loss {result.eval_loss:.4f}" if result.eval_loss is not None else ""))
    log(f"adapter: {result.adapter_dir} (base model {result.base_model})")
    return 0

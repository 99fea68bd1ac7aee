"""LoRA SFT on chat examples: peft on transformers' Trainer, loss on the assistant's tokens only.

Why Trainer with our own collator rather than TRL's SFTTrainer: TRL is not a dependency, and
what SFTTrainer would add here (assistant-only masking, dynamic padding) is a few dozen lines
below, while Trainer already brings what a long unattended run needs: gradient accumulation,
bf16/fp16, gradient checkpointing, checkpoints with optimizer/scheduler/RNG state and resume,
eval, and DDP/FSDP under `accelerate launch` without code changes.

Choices that matter:
- Loss only on the last assistant turn: tokens whose text lies in the prompt are labelled -100
  (found by character offsets, so tokenizer merges across the boundary cannot shift it).
- No padding to the maximum length: batches are padded to their longest row, and rows of
  similar length are grouped (Trainer's length-grouped sampler).
- The learning-rate schedule is ours (`lr_factor`): linear warmup that starts above zero and
  is clamped below the number of optimizer steps, then cosine to `min_lr_ratio`. A warmup
  longer than a short RAFT cycle would otherwise leave the rate near 0 for the whole cycle.
- The final adapter lands in DIR/final_model with the tokenizer and halo_forge_adapter.json
  naming the base model, so later stages need only the adapter's path.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import msgspec

from halo_forge import checkpoints, faults
from halo_forge.atomic import write_atomic
from halo_forge.data.chat import apply_chat_template, problem_messages
from halo_forge.errors import HaloError
from halo_forge.model_loading import (
    AdapterMeta,
    fit_cpu_threads,
    load_causal_lm,
    load_tokenizer,
    pick_dtype,
    resolve,
    write_adapter_meta,
)
from halo_forge.records import Example, Message, Problem
from halo_forge.sft_settings import SftSettings

FINAL_DIR = "final_model"
SUMMARY = "sft_summary.json"
IGNORE = -100

# LoRA targets per architecture (config.model_type): every attention and MLP projection,
# which trains better than attention-only at the same rank. Others get peft's "all-linear".
DEFAULT_TARGETS: dict[str, list[str]] = {
    **{arch: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
       for arch in ("llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "gemma3_text",
                    "olmo2", "deepseek_v2")},
    "phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
    "gpt2": ["c_attn", "c_proj", "c_fc"],
    "gpt_bigcode": ["c_attn", "c_proj", "c_fc"],
    "starcoder2": ["q_proj", "k_proj", "v_proj", "o_proj", "c_fc", "c_proj"],
}


class SFTConfig(SftSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One training run: the SFT settings (sft_settings.py, also pipeline.toml's [sft] and the
    `sft train` flags) and what only a run has."""

    model: str = ""  # HF id or local folder; "" = the base of init_adapter
    init_adapter: str = ""  # continue training this adapter instead of a fresh LoRA
    save_total_limit: Annotated[int, msgspec.Meta(
        description="checkpoints kept (the oldest go first)")] = 2
    progress: Annotated[bool, msgspec.Meta(description="Trainer's progress bar")] = True
    # transformers' report_to; the pipeline fills it from [output] trackers (trackers.py).
    report_to: Annotated[list[str], msgspec.Meta(
        description="trackers for the training steps: tensorboard, wandb, trackio")] = []

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.save_total_limit < 1:
            raise ValueError("save_total_limit must be at least 1")
        from halo_forge.trackers import check_trackers

        # Here, not when the Trainer is built: that comes after the model has loaded.
        check_trackers(self.report_to, key="report_to")


class TrainResult(msgspec.Struct, kw_only=True):
    adapter_dir: str
    base_model: str
    global_step: int
    train_examples: int
    eval_examples: int
    skipped_examples: int  # no assistant turn, or nothing left to learn after truncation
    train_loss: float | None = None  # mean over the run (Trainer's)
    first_loss: float | None = None  # first and last logged training loss
    last_loss: float | None = None
    eval_loss: float | None = None
    learning_rates: list[float] = []  # as logged, in order
    resumed_from: str = ""


# --- data ----------------------------------------------------------------------------------


def _example_from_row(row: Any, where: str) -> Example:
    if not isinstance(row, dict):
        raise HaloError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if "messages" in row or "text" in row:
        try:
            messages = [msgspec.convert(m, Message) for m in row.get("messages") or []]
            return Example(id=str(row.get("id") or where), messages=messages,
                           text=str(row.get("text") or ""), source=str(row.get("source") or ""))
        except (msgspec.ValidationError, ValueError) as exc:
            raise HaloError(f"{where}: bad example ({exc}); expected {{\"text\": ...}} or "
                            "{\"messages\": [{\"role\": ..., \"content\": ...}]}") from None
    if "prompt" in row and "reference" in row:
        try:
            return example_from_problem(msgspec.convert(row, Problem))
        except (msgspec.ValidationError, ValueError) as exc:
            raise HaloError(f"{where}: bad problem record ({exc})") from None
    raise HaloError(f"{where}: no \"text\" or \"messages\" field (SFT JSONL is "
                    "{\"text\": ...} or {\"messages\": [...]} per line)")


def example_from_problem(p: Problem) -> Example:
    return Example(id=p.id, messages=problem_messages(p), source=p.source)


def load_examples(path: str | os.PathLike[str]) -> list[Example]:
    """Examples from shards (Example or Problem records) or JSONL (text, messages, problems)."""
    from halo_forge.shards import SUFFIX, read_shards, shard_header

    p = Path(path)
    if not p.exists():
        raise HaloError(f"{p}: no such file or folder (--data takes JSONL or shards)")
    if p.is_dir() or p.suffix == SUFFIX:
        from halo_forge.shards import shard_paths

        out: list[Example] = []
        for sp in shard_paths(p):
            kind = shard_header(sp).record_type
            if kind == "Example":
                out.extend(read_shards(sp, Example))
            elif kind == "Problem":
                out.extend(example_from_problem(q) for q in read_shards(sp, Problem)
                           if q.reference.strip())
            else:
                raise HaloError(f"{sp}: holds {kind} records; SFT trains on Example or Problem "
                                "shards")
        return out
    from halo_forge.data.jsonl import read_jsonl

    out = [_example_from_row(row, f"{p}:{n}") for n, row in read_jsonl(p, Any)]
    if not out:
        raise HaloError(f"{p}: no examples")
    return out


def assistant_header(tokenizer: Any) -> str:
    """The text a chat template puts before an assistant answer (ChatML: <|im_start|>assistant\\n)."""
    probe = [{"role": "user", "content": "x"}]
    with_prompt = apply_chat_template(probe, tokenizer=tokenizer, add_generation_prompt=True)
    without = apply_chat_template(probe, tokenizer=tokenizer)
    if with_prompt.startswith(without) and len(with_prompt) > len(without):
        return with_prompt[len(without):]
    return "<|im_start|>assistant\n"


def encode_example(example: Example, tokenizer: Any, *, max_length: int,
                   header: str | None = None) -> dict[str, list[int]] | None:
    """input_ids and labels (prompt tokens -100); None when nothing is left to learn."""
    if example.messages:
        msgs = [{"role": m.role, "content": m.content} for m in example.messages]
        last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=-1)
        if last < 0:
            return None
        prompt = apply_chat_template(msgs[:last], tokenizer=tokenizer, add_generation_prompt=True)
        text = apply_chat_template(msgs[:last + 1], tokenizer=tokenizer)
        boundary = len(prompt) if text.startswith(prompt) else 0
    else:
        text = example.text
        header = header if header is not None else assistant_header(tokenizer)
        cut = text.rfind(header)
        boundary = cut + len(header) if cut >= 0 else 0  # no header: learn the whole text
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                    truncation=True, max_length=max_length)
    ids = list(enc["input_ids"])
    labels = [IGNORE if end <= boundary else tok
              for tok, (_, end) in zip(ids, enc["offset_mapping"])]
    if all(x == IGNORE for x in labels):
        return None
    return {"input_ids": ids, "labels": labels}


def split_eval(examples: Sequence[Example], *, fraction: float,
               seed: int) -> tuple[list[Example], list[Example]]:
    """(train, eval): a stable split by example id, at least one of each when asked for."""
    if fraction <= 0 or len(examples) < 2:
        return list(examples), []

    def unit(e: Example, i: int) -> float:
        digest = hashlib.sha256(f"{seed}:{e.id}:{i}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    ranked = sorted(range(len(examples)), key=lambda i: unit(examples[i], i))
    n_eval = min(len(examples) - 1, max(1, round(fraction * len(examples))))
    held = set(ranked[:n_eval])
    return ([e for i, e in enumerate(examples) if i not in held],
            [e for i, e in enumerate(examples) if i in held])


class Collator:
    """Pads a batch to its longest row (labels with -100, attention mask 0)."""

    def __init__(self, pad_id: int, *, multiple_of: int | None = None) -> None:
        self.pad_id, self.multiple_of = pad_id, multiple_of

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        if self.multiple_of:
            width = -(-width // self.multiple_of) * self.multiple_of
        ids = torch.full((len(features), width), self.pad_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            ids[row, :n] = torch.tensor(f["input_ids"])
            labels[row, :n] = torch.tensor(f["labels"])
            mask[row, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


# --- schedule ------------------------------------------------------------------------------


def warmup_steps(total_steps: int, ratio: float) -> int:
    """Warmup steps for a run of `total_steps` optimizer steps: never the whole run."""
    return max(0, min(math.ceil(ratio * total_steps), total_steps - 1))


def lr_factor(step: int, *, total: int, warmup: int, min_ratio: float) -> float:
    """The multiplier of the learning rate at optimizer step `step` (0-based).

    Warmup is (step+1)/(warmup+1), so the very first step already learns; then a cosine from
    1 to min_ratio over the remaining steps."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


# --- training ------------------------------------------------------------------------------


def _target_modules(config: SFTConfig, model: Any) -> list[str] | str:
    if config.target_modules:
        return list(config.target_modules)
    return DEFAULT_TARGETS.get(getattr(model.config, "model_type", ""), "all-linear")


def _training_args(config: SFTConfig, out: Path, *, has_eval: bool, dtype: Any,
                   learning_rate: float) -> Any:
    import dataclasses

    import torch
    from transformers import TrainingArguments

    from halo_forge.trackers import PROJECT

    cuda = torch.cuda.is_available()
    per_epoch = "epoch"
    kwargs: dict[str, Any] = dict(
        output_dir=str(out),
        num_train_epochs=config.epochs if config.epochs > 0 else 1.0,
        max_steps=config.max_steps if config.max_steps > 0 else -1,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=learning_rate,
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        warmup_steps=0,  # ours: see lr_factor
        logging_steps=config.logging_steps,
        logging_first_step=True,
        save_strategy="steps" if config.save_steps else per_epoch,
        save_total_limit=config.save_total_limit,
        eval_strategy=("steps" if config.eval_steps else per_epoch) if has_eval else "no",
        bf16=cuda and dtype == torch.bfloat16,
        fp16=cuda and dtype != torch.bfloat16,
        report_to=list(config.report_to) or "none",
        seed=config.seed,
        data_seed=config.seed,
        remove_unused_columns=False,
        ddp_find_unused_parameters=False,  # LoRA: every trainable parameter gets a gradient
        dataloader_pin_memory=cuda,
        disable_tqdm=not config.progress,
    )
    if not cuda and int(os.environ.get("WORLD_SIZE", "1") or "1") > 1:
        kwargs["use_cpu"] = True  # ranks on CPU (gloo): DDP only when the Trainer is told so
    if config.save_steps:
        kwargs["save_steps"] = config.save_steps
    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    if config.report_to and "project" in fields:  # trackio's project (transformers >= 4.55)
        kwargs["project"] = os.environ.get("TRACKIO_PROJECT") or PROJECT
    if has_eval and config.eval_steps:
        kwargs["eval_steps"] = config.eval_steps
    if config.gradient_checkpointing:  # renamed "activation_checkpointing" in transformers 5
        name = ("activation_checkpointing" if "activation_checkpointing" in fields
                else "gradient_checkpointing")
        kwargs[name] = True
        kwargs[f"{name}_kwargs"] = {"use_reentrant": False}
    if config.group_by_length:  # the option's name changed in transformers 5
        if "train_sampling_strategy" in fields:
            kwargs["train_sampling_strategy"] = "group_by_length"
        else:
            kwargs["group_by_length"] = True
    if "eval_strategy" not in fields:
        kwargs["evaluation_strategy"] = kwargs.pop("eval_strategy")
    return TrainingArguments(**kwargs)


def _make_trainer_class(config: SFTConfig) -> type:
    from torch.optim.lr_scheduler import LambdaLR
    from transformers import Trainer

    class SFTTrainer(Trainer):
        def _save_checkpoint(self, model: Any, trial: Any) -> None:
            # Our rotation, after the new checkpoint is certified: the Trainer's own deletes
            # the older ones before a kill could have torn the new one (checkpoints.py).
            limit, self.args.save_total_limit = self.args.save_total_limit, None
            try:
                faults.point("train.checkpoint.begin")
                super()._save_checkpoint(model, trial)
            finally:
                self.args.save_total_limit = limit
            if self.args.should_save:
                folder = Path(self._get_output_dir(trial=trial)) / \
                    f"checkpoint-{self.state.global_step}"
                faults.point("train.checkpoint.written")
                checkpoints.certify(folder)
                checkpoints.rotate(folder.parent, keep=limit)

        def _save_rng_state(self, output_dir: Any) -> None:
            faults.point("train.checkpoint.torn")  # weights and optimizer written, state not
            super()._save_rng_state(output_dir)

        def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
            if self.lr_scheduler is None:
                warmup = warmup_steps(num_training_steps, config.warmup_ratio)
                factor = functools.partial(lr_factor, total=num_training_steps, warmup=warmup,
                                           min_ratio=config.min_lr_ratio)
                self.lr_scheduler = LambdaLR(optimizer or self.optimizer, factor)
                self._created_lr_scheduler = True
            return self.lr_scheduler

    return SFTTrainer


@contextlib.contextmanager
def quiet_checkpointing_alias() -> Iterator[None]:
    """peft reads `model.is_gradient_checkpointing` whenever it wraps a model (each run, each
    RAFT cycle), and transformers 5 warns that the name is deprecated: noise about peft's code
    that the user can do nothing about. Only that message is silenced, only around the wrap."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated",
                                category=FutureWarning)
        yield


def _log_last_step() -> Any:
    """A callback that logs the last step whatever logging_steps says: with logging_steps
    above the step count only step 1 was logged, and the summary's loss went from it to
    itself (logging_first_step covers the other end)."""
    from transformers import TrainerCallback

    class LogLastStep(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if state.max_steps > 0 and state.global_step >= state.max_steps:
                control.should_log = True
            return control

    return LogLastStep()


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def train(
    config: SFTConfig,
    *,
    data: str | os.PathLike[str] | Sequence[Example],
    output_dir: str | os.PathLike[str],
    resume: bool = False,
    learning_rate: float | None = None,
    init_adapter: str | None = None,
    callbacks: Sequence[Any] = (),
    log: Callable[[str], None] = lambda line: None,
) -> TrainResult:
    """Trains a LoRA adapter; returns where it is and how the run went.

    The RAFT loop calls this once per cycle with the learning rate it chose and the previous
    cycle's adapter as `init_adapter`."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import set_seed

    out = Path(output_dir)
    lr = learning_rate if learning_rate is not None else config.learning_rate
    if lr <= 0:
        raise HaloError(f"learning rate must be > 0, got {lr}")
    init = init_adapter if init_adapter is not None else config.init_adapter
    base_model, init = resolve(config.model, init)

    if not resume:
        if checkpoints.checkpoints(out) or (out / FINAL_DIR).exists():
            raise HaloError(f"{out} already holds a training run; pass --resume to continue it "
                            "or choose a new --output")
    # The newest checkpoint written whole; torn ones after it are removed by the main process
    # (the others skip them the same way).
    found = checkpoints.last_complete(out, log=log, remove_incomplete=_is_main_process()) \
        if resume else None
    last = str(found) if found else None
    if resume and last is None:
        log(f"no checkpoint in {out}; starting from the beginning")
    elif last:
        log(f"resuming from {last}")

    examples = load_examples(data) if isinstance(data, (str, os.PathLike)) else list(data)
    if not examples:
        raise HaloError("no training examples")
    tokenizer = load_tokenizer(base_model)
    tokenizer.padding_side = "right"
    header = assistant_header(tokenizer)
    train_ex, eval_ex = split_eval(examples, fraction=config.eval_fraction, seed=config.seed)
    skipped = 0

    def encode(items: list[Example]) -> list[dict[str, list[int]]]:
        nonlocal skipped
        rows = []
        for e in items:
            row = encode_example(e, tokenizer, max_length=config.max_length, header=header)
            if row is None:
                skipped += 1
            else:
                rows.append(row)
        return rows

    train_rows, eval_rows = encode(train_ex), encode(eval_ex)
    if not train_rows:
        raise HaloError("no example has an assistant answer to learn from (need chat messages "
                        "ending in an assistant turn, or text in the model's chat template)")

    dtype = pick_dtype(config.dtype, training=True)
    model = load_causal_lm(base_model, dtype=dtype)
    fit_cpu_threads(model, "cuda" if torch.cuda.is_available() else "cpu")
    if config.gradient_checkpointing:
        model.config.use_cache = False
        model.enable_input_require_grads()  # frozen embeddings + checkpointing need this
    # The LoRA's initial weights come from torch's global generator, which the Trainer seeds
    # only later: without this, two runs of one seed trained different adapters (the CPU
    # recipe's held-out pass@1 then read 48% in one run and 23% in the next).
    set_seed(config.seed)
    with quiet_checkpointing_alias():
        if init:
            model = PeftModel.from_pretrained(model, init, is_trainable=True)
            lora_cfg = model.peft_config[model.active_adapter]
            rank, alpha, targets = lora_cfg.r, lora_cfg.lora_alpha, lora_cfg.target_modules
        else:
            targets = _target_modules(config, model)
            rank, alpha = config.lora_rank, config.lora_alpha
            model = get_peft_model(model, LoraConfig(
                r=rank, lora_alpha=alpha, lora_dropout=config.lora_dropout,
                target_modules=targets, task_type="CAUSAL_LM", bias="none"))

    args = _training_args(config, out, has_eval=bool(eval_rows), dtype=dtype, learning_rate=lr)
    trainer = _make_trainer_class(config)(
        model=model, args=args, train_dataset=train_rows, eval_dataset=eval_rows or None,
        data_collator=Collator(tokenizer.pad_token_id,
                               multiple_of=8 if torch.cuda.is_available() else None),
        processing_class=tokenizer, callbacks=[_log_last_step(), *callbacks],
    )
    output = trainer.train(resume_from_checkpoint=last if resume and last else None)
    eval_loss = None
    if eval_rows:
        eval_loss = float(trainer.evaluate()["eval_loss"])

    history = trainer.state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    result = TrainResult(
        adapter_dir=str(out / FINAL_DIR), base_model=base_model,
        global_step=trainer.state.global_step, train_examples=len(train_rows),
        eval_examples=len(eval_rows), skipped_examples=skipped,
        train_loss=float(output.training_loss) if output.training_loss is not None else None,
        first_loss=losses[0] if losses else None, last_loss=losses[-1] if losses else None,
        eval_loss=eval_loss,
        learning_rates=[float(h["learning_rate"]) for h in history if "learning_rate" in h],
        resumed_from=str(last) if resume and last else "",
    )
    final = out / FINAL_DIR
    trainer.save_model(str(final))  # the adapter only (peft), from the main process only
    faults.point("train.final_model")
    if _is_main_process() and trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(final))
        write_adapter_meta(final, AdapterMeta(
            base_model=base_model, halo_forge_version=_version(), parent_adapter=init,
            lora_rank=int(rank), lora_alpha=float(alpha),
            target_modules=sorted(targets) if isinstance(targets, (list, set)) else str(targets),
            learning_rate=lr, epochs=config.epochs, global_step=result.global_step,
            train_examples=result.train_examples, eval_examples=result.eval_examples,
            train_loss=result.train_loss, eval_loss=eval_loss))
        write_atomic(out / SUMMARY, msgspec.json.format(msgspec.json.encode(result)))
    return result


def _version() -> str:
    from halo_forge import __version__

    return __version__

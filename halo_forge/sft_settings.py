"""The LoRA SFT settings, defined once: the [sft] section of pipeline.toml
(config.SftSection), the library's `train.SFTConfig` and the `halo-forge sft train` flags
(cli/flags.py makes them from these fields, their defaults and descriptions) all are this
Struct plus their own few fields.

No torch here: config loading and `--help` stay fast.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import msgspec

Dtype = Literal["auto", "bfloat16", "float16", "float32"]


def _doc(text: str) -> msgspec.Meta:
    return msgspec.Meta(description=text)


class SftSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    # What error messages put before a field's name ("sft." in pipeline.toml).
    _key_prefix: ClassVar[str] = ""

    epochs: Annotated[float, _doc("passes over the examples")] = 3.0
    max_steps: Annotated[int, _doc("> 0: stop after this many optimizer steps (overrides "
                                   "epochs)")] = 0
    learning_rate: Annotated[float, _doc("peak learning rate")] = 2e-4
    min_lr_ratio: Annotated[float, _doc("the cosine decays to learning_rate * this, in "
                                        "[0, 1]")] = 0.1
    warmup_ratio: Annotated[float, _doc("warmup as a fraction of the optimizer steps (always "
                                        "fewer than them), in [0, 1)")] = 0.03
    weight_decay: Annotated[float, _doc("AdamW weight decay")] = 0.0
    max_grad_norm: Annotated[float, _doc("gradient clipping norm (0 = none)")] = 1.0
    batch_size: Annotated[int, _doc("examples per device per step")] = 4
    grad_accum: Annotated[int, _doc("gradient accumulation steps")] = 4
    # Longer examples are truncated; a truncated answer still trains its first part.
    max_length: Annotated[int, _doc("tokens per example")] = 2048
    lora_rank: Annotated[int, _doc("LoRA rank")] = 16
    lora_alpha: Annotated[float, _doc("LoRA alpha")] = 32.0
    lora_dropout: Annotated[float, _doc("LoRA dropout")] = 0.05
    target_modules: Annotated[list[str], _doc(
        "module names to adapt (default: every attention and MLP projection of the "
        "architecture)")] = []
    gradient_checkpointing: Annotated[bool, _doc(
        "trade compute for memory (long sequences, big models)")] = False
    dtype: Annotated[Dtype, _doc("auto: bf16 on GPUs that support it, else fp32 (+fp16 "
                                 "autocast on GPU)")] = "auto"
    # 0: the pipeline holds out its own test split, and RAFT's kept samples are too few to
    # spare; the eval loss of a standalone run is one flag away.
    eval_fraction: Annotated[float, _doc("of the examples, held out for an eval loss, in "
                                         "[0, 1); 0 = no eval")] = 0.0
    eval_steps: Annotated[int, _doc("evaluate every N steps (0 = once per epoch)")] = 0
    save_steps: Annotated[int, _doc("checkpoint every N steps (0 = once per epoch)")] = 0
    logging_steps: Annotated[int, _doc("log the loss every N steps")] = 10
    group_by_length: Annotated[bool, _doc(
        "batch examples of similar length (less padding)")] = True
    seed: Annotated[int, _doc("data order, dropout and LoRA init")] = 42
    # Where, not what: the same steps and checkpoints either way (config.NEUTRAL_KEYS).
    train_process: Annotated[Literal["auto", "child", "inline"], _doc(
        "child: train in a process of its own, whose exit hands every byte of GPU memory "
        "back (what vLLM needs to start or wake after training); inline: in this process; "
        "auto: child when CUDA is in use")] = "auto"

    def __post_init__(self) -> None:
        k = self._key_prefix
        if self.epochs <= 0 and self.max_steps <= 0:
            raise ValueError(f"{k}epochs must be > 0 (or {k}max_steps set)")
        if self.learning_rate <= 0:
            raise ValueError(f"{k}learning_rate must be > 0, got {self.learning_rate}")
        for name in ("batch_size", "grad_accum", "max_length", "lora_rank", "logging_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{k}{name} must be at least 1")
        for name in ("eval_steps", "save_steps", "weight_decay", "max_grad_norm"):
            if getattr(self, name) < 0:
                raise ValueError(f"{k}{name} must be >= 0")
        if not 0 <= self.warmup_ratio < 1 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"{k}warmup_ratio must be in [0, 1) and {k}min_lr_ratio in [0, 1]")
        if not 0 <= self.eval_fraction < 1:
            raise ValueError(f"{k}eval_fraction must be in [0, 1)")

"""A tiny, randomly initialised chat model built on the fly: the CPU recipe's model and the tests'.

`build_tiny_model(dir)` writes a real Hugging Face model folder: a small Qwen2 config, its
weights as safetensors, and a byte-level BPE tokenizer trained (with `tokenizers`) on a corpus
of code-problem text, with a ChatML chat template and the special tokens Qwen uses. Anything
that loads a model (AutoModelForCausalLM/AutoTokenizer.from_pretrained, peft, vLLM) loads it,
so every code path that a 7B run takes runs on a laptop in seconds.

The folder is built in a temporary sibling and renamed into place, and a rerun with the same
settings reuses it, so a pipeline that builds it on the fly can resume.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import msgspec

from halo_forge.errors import HaloError

IM_START, IM_END, ENDOFTEXT = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)

# ChatML, exactly what halo_forge.data.chat.render_chatml writes.
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

MARKER = "halo_forge_tiny.json"


class TinySpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a tiny model folder was built from (written beside it; a rebuild must match)."""

    seed: int = 0
    layers: int = 2
    hidden: int = 64
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 128
    vocab_size: int = 512
    max_positions: int = 2048
    corpus_sha256: str = ""


def default_corpus() -> list[str]:
    """The built-in problems as SFT conversations: the text the CPU recipe trains on."""
    from halo_forge.data.chat import generation_prompt, sft_text
    from halo_forge.data.registry import load_problems

    texts = []
    for p in load_problems("builtin"):
        texts.append(generation_prompt(p))
        if p.reference.strip():
            texts.append(sft_text(p))
    return texts


def _corpus_digest(texts: Sequence[str]) -> str:
    import hashlib

    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()


def _train_tokenizer(texts: Sequence[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte stays encodable
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,  # a chat model's turn ends with <|im_end|> (as Qwen's instruct models)
        pad_token=ENDOFTEXT,
        additional_special_tokens=[IM_START, IM_END],
        padding_side="left",
        model_max_length=2048,
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_model(
    out_dir: str | os.PathLike[str],
    *,
    corpus: Iterable[str] | None = None,
    seed: int = 0,
    layers: int = 2,
    hidden: int = 64,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 128,
    vocab_size: int = 512,
    max_positions: int = 2048,
) -> Path:
    """Writes (or reuses) a tiny Qwen2 chat model at `out_dir` and returns its path."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    texts = list(corpus) if corpus is not None else default_corpus()
    if not texts:
        raise HaloError("build_tiny_model needs a non-empty corpus to train its tokenizer on")
    spec = TinySpec(seed=seed, layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads,
                    intermediate=intermediate, vocab_size=vocab_size,
                    max_positions=max_positions, corpus_sha256=_corpus_digest(texts))
    marker = out / MARKER
    if marker.exists():
        try:
            old = msgspec.json.decode(marker.read_bytes(), type=TinySpec)
        except msgspec.DecodeError:
            old = None
        if old == spec:
            return out
        raise HaloError(f"{out} holds a different tiny model; remove it or choose another folder")
    if out.exists() and any(out.iterdir()):
        raise HaloError(f"{out} exists and is not a tiny model folder; choose an empty folder")

    tokenizer = _train_tokenizer(texts, vocab_size)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
        pad_token_id=tokenizer.pad_token_id,
    )
    # A private generator: building the model must not reseed the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[config.eos_token_id, tokenizer.convert_tokens_to_ids(ENDOFTEXT)],
        pad_token_id=tokenizer.pad_token_id,
    )

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / MARKER).write_bytes(msgspec.json.encode(spec))
    if out.exists():
        out.rmdir()  # empty (checked above)
    os.replace(tmp, out)
    return out

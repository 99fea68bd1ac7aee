"""A tiny chat model built on the fly: the CPU recipe's model and the tests'.

`build_tiny_model(dir)` writes a real Hugging Face model folder: a small Qwen2 config, its
weights as safetensors, and a byte-level BPE tokenizer trained (with `tokenizers`) on a corpus
of code-problem text, with a ChatML chat template and the special tokens Qwen uses. Anything
that loads a model (AutoModelForCausalLM/AutoTokenizer.from_pretrained, peft, vLLM) loads it,
so every code path that a 7B run takes runs on a laptop in seconds.

The weights are not left random: a short full-parameter "pretraining" on the corpus stands in
for the pretrained base a real user starts from. LoRA on a random model cannot learn (its
logits are too flat for low-rank updates to shape), so without it SFT teaches nothing, no
sample ever passes, and RAFT has nothing to keep. The default corpus is the chat-formatted
*training* split of the built-in problems (the held-out ones, which the benchmark scores, are
never seen), and the pretraining stops early on purpose: the model half-remembers the answers,
so sampling at temperature ~0.7 gives the mix of passing and failing programs RAFT learns from.

A run on the `skills` problems (examples/cpu-tiny.toml, the default) gets another base,
base_recipe("skills"): pretrained on what a base model would know (the training programs' code
without prompts, the prompts' words, and unrelated chats), so that SFT has the prompt -> program mapping to teach and the benchmark's
held-out problems, new combinations of the training programs' parts, are new to every stage.

The tokenizer splits text with Qwen2's own pipeline, and the pretraining tokenizes the corpus
with the tokenizer as reloaded from the folder: every later stage (SFT, RAFT, generation) loads
it that way, and a model pretrained on another tokenization of the same text is unlearned by
fine-tuning instead of sharpened by it.

The folder is built in a temporary sibling and renamed into place, and a rerun with the same
settings reuses it, so a pipeline that builds it on the fly can resume. Builders of one folder
take turns under an flock, so the temporary sibling has one fixed name: a build killed half-way
leaves it for the next build to replace, never one folder per kill.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import re
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

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

# transformers' Qwen2Tokenizer pre-tokenization regex (what every loader of a qwen2 folder uses).
QWEN2_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)


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
    # The pretraining (0 steps = random weights); part of the spec, so changing it rebuilds.
    pretrain_steps: int = 0
    pretrain_lr: float = 0.0
    pretrain_batch: int = 0
    pretrain_max_length: int = 0
    # How text is split before BPE; "" (folders built before it was fixed to Qwen2's) differs
    # from what any loader of the folder uses, so such a folder is never reused.
    pretokenizer: str = ""


# The pretraining of the tests' base and of a tiny run on any dataset but skills: tuned so that
# after a short SFT the model passes some, not all, of its samples.
PRETRAIN_STEPS = 250
PRETRAIN_LR = 3e-3
PRETRAIN_BATCH = 8
PRETRAIN_MAX_LENGTH = 512


def default_corpus(*, split_seed: int = 0, test_fraction: float = 0.25) -> list[str]:
    """The training split of the built-in problems as chat conversations (prompt + reference).

    The split is the pipeline's (`data.split_seed`, `data.test_fraction`; the defaults are
    examples/cpu-tiny.toml's), so no held-out problem the benchmark scores is in the corpus."""
    from halo_forge.data.chat import sft_text
    from halo_forge.data.registry import get_spec, load_problems
    from halo_forge.data.split import split_problems

    train, _ = split_problems(load_problems("builtin"), seed=split_seed,
                              test_fraction=test_fraction,
                              official=get_spec("builtin").official_split)
    return [sft_text(p) for p in train if p.reference.strip()]


# The skills base has more to know (60 programs, their prompts' words, the built-in chats, the
# echo chats and block snippets) and must know its code well before LoRA can map prompts onto
# it: 250 steps left it unable to write a whole program (measured: SFT then passed 1% of the
# training prompts, 500 steps 22%); 800 since the echo chats and snippets joined the corpus.
SKILLS_PRETRAIN_STEPS = 800


class BaseRecipe(NamedTuple):
    """What the tiny base of a run is pretrained on, and for how long."""

    corpus: list[str]
    pretrain_steps: int


def base_recipe(dataset: str = "builtin", *, split_seed: int = 0,
                test_fraction: float = 0.25) -> BaseRecipe:
    """The tiny base for a run on `dataset`: `skills` gets skills_corpus(), every other dataset
    the built-in training split as chats (default_corpus)."""
    if dataset == "skills":
        return BaseRecipe(skills_corpus(), SKILLS_PRETRAIN_STEPS)
    return BaseRecipe(default_corpus(split_seed=split_seed, test_fraction=test_fraction),
                      PRETRAIN_STEPS)


def skills_corpus() -> list[str]:
    """What a base model would know before it is taught the skills problems, and nothing more.

    - the code of the training split's programs, fenced, without their prompts: it can write
      them, but no prompt leads to one;
    - the training prompts as text of their own, apart from any code: their words are known;
    - unrelated instruction data, every built-in problem as a chat: it answers a chat with a
      fenced program and ends its turn;
    - chats that echo random instructions into comments (echo_chats): it can copy a sentence
      of the question into the code, as code models do;
    - the training programs' commented blocks in random order (block_snippets): a comment
      decides the block below it.
    No held-out program, prompt or prompt -> program pair is in it: SFT teaches the mapping,
    and the held-out combinations are new to every stage."""
    from halo_forge.data.chat import fenced, sft_text
    from halo_forge.data.registry import get_spec, load_problems
    from halo_forge.data.split import split_problems

    train, _ = split_problems(load_problems("skills"), official=get_spec("skills").official_split)
    return ([fenced(p.reference, p.language) for p in train] + [p.prompt for p in train]
            + [sft_text(p) for p in load_problems("builtin") if p.reference.strip()]
            + echo_chats(train) + block_snippets())


BLOCK_SNIPPETS = 120


def block_snippets(n: int = BLOCK_SNIPPETS, seed: int = 0) -> list[str]:
    """Code files of a few commented blocks of one language in random order: the code a base
    knows, where each block follows its comment whatever came before.

    In the programs alone, a compute block always follows one of five read blocks, and a tiny
    model learns to write it from those; here it learns that the comment decides it (measured
    without these: when a held-out sample's comment named the right task, the next block was
    that task's 50-64% of the time). A read block is never followed by a compute block it makes
    a held-out program with, so no held-out program's blocks are ever adjacent here."""
    from halo_forge.data import skills
    from halo_forge.data.chat import fenced

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        lang = rng.choice(skills.LANGUAGES)
        picked: list[tuple[str, str]] = []  # ("read" | "compute", name)
        while len(picked) < rng.randint(2, 5):  # 2 to 5 blocks, fewer more often
            kind = rng.choice(("read", "compute"))
            name = rng.choice(list(skills.FORMATS if kind == "read" else skills.TASKS))
            if (kind == "compute" and picked and picked[-1][0] == "read"
                    and (name, picked[-1][1], lang) in skills.HELD_OUT):
                continue
            picked.append((kind, name))
        out.append(fenced("\n".join(skills.commented_block(kind, name, lang)
                                     for kind, name in picked), lang))
    return out


# Verbs an echoed instruction starts with: the skills prompts' two among others, so that what
# is learned is "repeat the sentence", not "repeat a Read sentence".
ECHO_VERBS = ("Read", "Print", "Sort", "Count", "Find", "Parse", "Return", "Check", "Write",
              "Keep", "Drop", "Take")
ECHO_CHATS = 240


def echo_chats(train: Sequence, n: int = ECHO_CHATS, seed: int = 0) -> list[str]:
    """Chats whose answer repeats each instruction of the question as a comment above a line of
    code: what a code base model knows (it has read plenty of code that echoes its spec).

    The instructions are random words (the words of the training prompts, in random order), the
    lines of code random lines of the training programs, so no chat is a skills prompt or
    program: only the copying is taught. A 2-layer model does not learn to copy from 60
    programs by itself; measured without these chats, the comment above a held-out triple's
    compute block named the task of a training triple 85% of the time."""
    from halo_forge.data.chat import DEFAULT_SYSTEM, LANGUAGE_NAMES, apply_chat_template
    from halo_forge.data.skills import COMMENT
    from halo_forge.records import Message

    rng = random.Random(seed)
    words = sorted({w for p in train for w in re.findall(r"[a-z]+", p.prompt.lower())})
    lines: dict[str, list[str]] = {}
    for p in train:
        # The lines of its blocks (indented in C, C++ and Rust), never the comments.
        lines.setdefault(p.language, []).extend(
            ln for ln in p.reference.split("\n") if ln.strip() and COMMENT[p.language].strip()
            not in ln and (ln.startswith(" ") or p.language == "python"))
    languages = sorted(lines)
    chats = []
    for _ in range(n):
        lang = rng.choice(languages)
        sentences = [" ".join([rng.choice(ECHO_VERBS), *rng.choices(words, k=rng.randint(2, 9))])
                     + "." for _ in range(rng.randint(1, 3))]
        body = []
        for sentence in sentences:
            code = rng.choice(lines[lang])
            indent = code[:len(code) - len(code.lstrip())]
            body += [indent + COMMENT[lang] + sentence, code]
        question = " ".join(sentences) + f" Write the program in {LANGUAGE_NAMES[lang]}."
        answer = f"```{lang}\n" + "\n".join(body) + "\n```"
        chats.append(apply_chat_template([
            Message(role="system", content=DEFAULT_SYSTEM), Message(role="user", content=question),
            Message(role="assistant", content=answer)]))
    return chats


def _corpus_digest(texts: Sequence[str]) -> str:
    import hashlib

    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()


def _train_tokenizer(texts: Sequence[str], vocab_size: int):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Qwen2's own text pipeline (NFC, its split regex, byte-level without a regex): transformers
    # loads a Qwen2 folder's tokenizer as Qwen2Tokenizer, which rebuilds exactly this pipeline
    # whatever tokenizer.json says. Any other pipeline here splits text differently once saved
    # and reloaded: the model would be pretrained on one tokenization of the corpus and
    # fine-tuned and prompted with another (28 of the 30 default texts differed).
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
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
    kv_heads: int | None = None,
    intermediate: int = 128,
    vocab_size: int = 512,
    max_positions: int = 2048,
    pretrain_steps: int = PRETRAIN_STEPS,
    pretrain_lr: float = PRETRAIN_LR,
    pretrain_batch: int = PRETRAIN_BATCH,
    pretrain_max_length: int = PRETRAIN_MAX_LENGTH,
) -> Path:
    """Writes (or reuses) a tiny Qwen2 chat model at `out_dir` and returns its path.

    `pretrain_steps` full-parameter AdamW steps on `corpus` (0: random weights) make it a
    "pretrained base"; the run is seeded and deterministic on CPU, and a rerun with the same
    settings and corpus reuses the folder.

    Each attention head is `hidden // heads` wide: the default (64 / 4 = 16) is the fastest on
    CPU, and `heads=1` (64 wide) is the shape vLLM's CPU attention accepts (it refuses 16).
    `kv_heads` defaults to min(2, heads)."""
    out = Path(out_dir)
    if kv_heads is None:
        kv_heads = min(2, heads)
    if heads < 1 or kv_heads < 1 or hidden % heads or heads % kv_heads:
        raise HaloError(f"build_tiny_model: hidden ({hidden}) must be a multiple of heads "
                        f"({heads}), and heads a multiple of kv_heads ({kv_heads}); e.g. "
                        "heads = 1 for 64-wide heads")
    texts = list(corpus) if corpus is not None else default_corpus()
    if not texts:
        raise HaloError("build_tiny_model needs a non-empty corpus to train its tokenizer on")
    spec = TinySpec(seed=seed, layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads,
                    intermediate=intermediate, vocab_size=vocab_size,
                    max_positions=max_positions, corpus_sha256=_corpus_digest(texts),
                    pretrain_steps=pretrain_steps,
                    pretrain_lr=pretrain_lr if pretrain_steps else 0.0,
                    pretrain_batch=pretrain_batch if pretrain_steps else 0,
                    pretrain_max_length=pretrain_max_length if pretrain_steps else 0,
                    pretokenizer="qwen2")
    if pretrain_steps < 0 or (pretrain_steps and (pretrain_lr <= 0 or pretrain_batch < 1
                                                   or pretrain_max_length < 2)):
        raise HaloError("build_tiny_model: pretrain_steps must be >= 0, and with steps, "
                        "pretrain_lr > 0, pretrain_batch >= 1 and pretrain_max_length >= 2")
    out.parent.mkdir(parents=True, exist_ok=True)
    # One builder per folder at a time: a second one waits, then reuses what the first built.
    with _build_lock(out):
        _remove_dead_temps(out)
        return _build_locked(out, spec, texts)


def _build_locked(out: Path, spec: TinySpec, texts: list[str]) -> Path:
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    seed = spec.seed
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

    tokenizer = _train_tokenizer(texts, spec.vocab_size)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden,
        intermediate_size=spec.intermediate,
        num_hidden_layers=spec.layers,
        num_attention_heads=spec.heads,
        num_key_value_heads=spec.kv_heads,
        max_position_embeddings=spec.max_positions,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
        pad_token_id=tokenizer.pad_token_id,
    )
    # A fixed name under the lock: a killed build's folder is the next build's to replace.
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        # Pretrain with the tokenizer exactly as SFT, RAFT and generation will load it from the
        # folder (AutoTokenizer picks its class from config.json), and refuse to build a model
        # whose saved tokenizer splits the corpus differently from the one it was trained with.
        loaded = AutoTokenizer.from_pretrained(tmp)
        if _token_ids(loaded, texts) != _token_ids(tokenizer, texts):
            raise HaloError(f"the tiny model's tokenizer ({type(loaded).__name__}) tokenizes text "
                            "differently once saved and reloaded; this transformers version is "
                            "not supported by build_tiny_model")
        # A private generator: building the model must not reseed the caller's global RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = Qwen2ForCausalLM(config)
            if spec.pretrain_steps:
                pretrain(model, loaded, texts, steps=spec.pretrain_steps, lr=spec.pretrain_lr,
                         batch=spec.pretrain_batch, max_length=spec.pretrain_max_length,
                         seed=seed)
        model.generation_config = GenerationConfig(
            eos_token_id=[config.eos_token_id, tokenizer.convert_tokens_to_ids(ENDOFTEXT)],
            pad_token_id=tokenizer.pad_token_id,
        )
        model.save_pretrained(tmp, safe_serialization=True)
        (tmp / MARKER).write_bytes(msgspec.json.encode(spec))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # no half-built folder left behind
        raise
    if out.exists():
        out.rmdir()  # empty (checked above)
    os.replace(tmp, out)
    return out


@contextlib.contextmanager
def _build_lock(out: Path) -> Iterator[None]:
    """An flock beside the folder: the kernel drops it when its holder dies, SIGKILL included,
    so a killed builder never blocks the next one. The lock file stays (removing it would let
    a waiter and a newcomer lock two different files)."""
    lock = out.with_name(f".{out.name}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _remove_dead_temps(out: Path) -> None:
    """Removes `.NAME.tmp<pid>` folders of builders from before the lock whose process is gone
    (a live pid, even a reused one, keeps its folder: never delete a running build's files)."""
    for tmp in out.parent.glob(f".{out.name}.tmp*"):
        pid = tmp.name[len(f".{out.name}.tmp"):]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:  # alive, another user's
            pass


def _token_ids(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    return tokenizer(list(texts), add_special_tokens=False).input_ids


def pretrain(model, tokenizer, texts: Sequence[str], *, steps: int, lr: float, batch: int,
             max_length: int, seed: int) -> list[float]:
    """Full-parameter next-token training of `model` on `texts`; returns the loss per step.

    A plain loop (no Trainer): a few hundred CPU steps on one small corpus need no checkpoints,
    and everything random here comes from one seeded generator."""
    import torch

    rows = [ids[:max_length] for ids in tokenizer(list(texts), add_special_tokens=False).input_ids]
    rows = [r for r in rows if len(r) >= 2]
    if not rows:
        raise HaloError("build_tiny_model: the corpus has no text to pretrain on")
    gen = torch.Generator().manual_seed(seed)
    pad = tokenizer.pad_token_id
    # Matrices 64 wide gain nothing from threads, and spinning OpenMP threads on a busy
    # machine (a test run beside other work) make it many times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _pretrain_loop(model, rows, gen=gen, pad=pad, steps=steps, lr=lr, batch=batch)
    finally:
        torch.set_num_threads(threads)


def _pretrain_loop(model, rows: list[list[int]], *, gen, pad: int, steps: int, lr: float,
                   batch: int) -> list[float]:
    import math

    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.95))
    warmup = max(1, steps // 20)
    losses = []
    model.train()
    order: list[int] = []
    for step in range(steps):
        # Linear warmup, then cosine to a tenth: large early steps on a random model diverge.
        scale = (step + 1) / warmup if step < warmup else (
            0.1 + 0.45 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup))))
        for group in opt.param_groups:
            group["lr"] = lr * scale
        picked = []
        while len(picked) < min(batch, len(rows)):
            if not order:  # epochs of the corpus in a seeded order
                order = torch.randperm(len(rows), generator=gen).tolist()
            picked.append(rows[order.pop()])
        width = max(len(r) for r in picked)
        ids = torch.full((len(picked), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(picked):
            ids[i, :len(r)] = torch.tensor(r)
            mask[i, :len(r)] = 1
        labels = ids.masked_fill(mask == 0, -100)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    model.eval()
    return losses

"""The tiny model builder: a real, loadable chat model folder, built on the fly."""

from __future__ import annotations

import pytest

from halo_forge.data.chat import render_chatml
from halo_forge.errors import HaloError
from halo_forge.tiny_model import IM_END, IM_START, MARKER, build_tiny_model


def test_folder_loads_with_auto_classes_and_has_a_chatml_template(tiny_model) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert (tiny_model / "model.safetensors").is_file() and (tiny_model / MARKER).is_file()
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert model.config.model_type == "qwen2" and model.config.num_hidden_layers == 2
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "add"},
                {"role": "assistant", "content": "```python\nprint(1)\n```"}]
    for gen in (False, True):
        rendered = tok.apply_chat_template(messages[:2], tokenize=False,
                                           add_generation_prompt=gen)
        assert rendered == render_chatml(messages[:2], add_generation_prompt=gen)
    # Special tokens are single tokens, and text survives a round trip through the tokenizer.
    for special in (IM_START, IM_END, tok.pad_token):
        assert len(tok(special, add_special_tokens=False).input_ids) == 1
    assert tok.eos_token == IM_END and tok.pad_token != tok.eos_token
    code = "def f(xs):\n    return sum(x * 2 for x in xs)  # ünïcode ✓\n"
    assert tok.decode(tok(code, add_special_tokens=False).input_ids) == code
    logits = model(**tok(["int main() {}"], return_tensors="pt")).logits
    assert logits.shape[-1] == len(tok)


def test_rebuild_reuses_the_folder_and_a_different_spec_is_refused(tmp_path) -> None:
    corpus = ["print('hello world')", "int main() { return 0; }"] * 10
    out = build_tiny_model(tmp_path / "m", corpus=corpus, seed=3, vocab_size=300)
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_model(tmp_path / "m", corpus=corpus, seed=3, vocab_size=300) == out
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(HaloError, match="different tiny model"):
        build_tiny_model(tmp_path / "m", corpus=corpus, seed=4, vocab_size=300)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("not a model")
    with pytest.raises(HaloError, match="not a tiny model folder"):
        build_tiny_model(tmp_path / "other", corpus=corpus)
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary build folder was renamed away


def test_pretraining_lowers_the_loss_and_is_part_of_the_spec(tmp_path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    corpus = ["def add(a, b):\n    return a + b\n", "int main() { return 0; }\n"] * 4
    raw = build_tiny_model(tmp_path / "raw", corpus=corpus, vocab_size=300, pretrain_steps=0)
    pre = build_tiny_model(tmp_path / "pre", corpus=corpus, vocab_size=300, pretrain_steps=40)
    tok = AutoTokenizer.from_pretrained(pre)
    ids = tok(corpus[0], add_special_tokens=False, return_tensors="pt").input_ids

    def loss(path) -> float:
        with torch.no_grad():
            return float(AutoModelForCausalLM.from_pretrained(path)(input_ids=ids, labels=ids).loss)

    assert loss(pre) < 0.5 * loss(raw)
    with pytest.raises(HaloError, match="different tiny model"):
        build_tiny_model(tmp_path / "pre", corpus=corpus, vocab_size=300, pretrain_steps=41)


def test_default_corpus_holds_no_held_out_problem() -> None:
    from halo_forge.data.registry import get_spec, load_problems
    from halo_forge.data.split import split_problems
    from halo_forge.tiny_model import default_corpus

    train, test = split_problems(load_problems("builtin"), seed=0, test_fraction=0.25,
                                 official=get_spec("builtin").official_split)
    corpus = "\n".join(default_corpus())
    assert test and all(p.prompt not in corpus for p in test)
    assert all(p.prompt in corpus for p in train if p.reference.strip())


def test_skills_base_knows_the_training_code_but_no_prompt_to_program_pair() -> None:
    """The skills base stands in for a real pretrained model: it has seen the training
    programs' code and the prompts' words, never a skills prompt with its program (SFT's job)
    and nothing of a held-out problem (the benchmark's)."""
    from halo_forge.data import skills
    from halo_forge.data.registry import get_spec, load_problems
    from halo_forge.data.split import split_problems
    from halo_forge.tiny_model import SKILLS_PRETRAIN_STEPS, base_recipe

    train, test = split_problems(load_problems("skills"),
                                 official=get_spec("skills").official_split)
    recipe = base_recipe("skills", split_seed=5, test_fraction=0.5)  # its own split either way
    corpus = recipe.corpus
    assert recipe.pretrain_steps == SKILLS_PRETRAIN_STEPS
    joined = "\n".join(corpus)
    assert test and all(p.prompt not in joined and p.reference.rstrip() not in joined
                        for p in test)
    assert all(p.reference.rstrip() in joined and p.prompt in corpus for p in train)
    # No text holds a skills prompt together with code of any kind, nor a skills program
    # inside a chat turn.
    for text in corpus:
        has_prompt = any(p.prompt in text for p in train)
        assert not (has_prompt and "```" in text), text[:200]
        if "<|im_start|>" in text:
            assert not any(p.reference.rstrip() in text for p in train), text[:200]
    assert {skills.triple(p) for p in test} == skills.HELD_OUT


def test_other_datasets_keep_the_builtin_base() -> None:
    from halo_forge.tiny_model import PRETRAIN_STEPS, base_recipe, default_corpus

    for name in ("builtin", "mbpp", "local"):
        assert base_recipe(name, split_seed=3, test_fraction=0.5) == (
            default_corpus(split_seed=3, test_fraction=0.5), PRETRAIN_STEPS)


def test_every_loader_splits_text_as_the_model_was_pretrained_on_it(tiny_model) -> None:
    """transformers loads a qwen2 folder's tokenizer as Qwen2Tokenizer, which rebuilds its own
    pre-tokenizer; the raw tokenizer.json (what the builder trained) must split text the same
    way, or pretraining and fine-tuning see two tokenizations of one text (SFT then unlearns
    what pretraining taught: the pass rate fell from ~30% to ~7%)."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    from halo_forge.tiny_model import default_corpus

    loaded = AutoTokenizer.from_pretrained(tiny_model)
    raw = Tokenizer.from_file(str(tiny_model / "tokenizer.json"))
    texts = default_corpus() + ["int f(int x) {\n    return x * x;\n}\n", "a  b\t\n\n  c ünï ✓"]
    for text in texts:
        assert loaded(text, add_special_tokens=False).input_ids == raw.encode(text).ids, text


def test_pretrained_model_fits_its_corpus_as_the_loaded_tokenizer_splits_it(tiny_model) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from halo_forge.tiny_model import default_corpus

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    losses = []
    for text in default_corpus()[:8]:
        ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            losses.append(float(model(input_ids=ids, labels=ids).loss))
    # Measured: ~0.1-0.2 nats/token; with the pretraining on another split of the same text
    # (the bug this guards) it was ~1.5.
    assert sum(losses) / len(losses) < 0.6, losses


def test_folder_from_before_the_qwen2_pretokenizer_is_not_reused(tmp_path) -> None:
    import msgspec

    from halo_forge.tiny_model import TinySpec

    corpus = ["print('hello world')", "int main() { return 0; }"] * 10
    out = build_tiny_model(tmp_path / "m", corpus=corpus, vocab_size=300, pretrain_steps=0)
    spec = msgspec.json.decode((out / MARKER).read_bytes(), type=TinySpec)
    assert spec.pretokenizer == "qwen2"
    old = msgspec.json.encode(msgspec.structs.replace(spec, pretokenizer=""))
    (out / MARKER).write_bytes(old.replace(b',"pretokenizer":""', b""))
    with pytest.raises(HaloError, match="different tiny model"):
        build_tiny_model(tmp_path / "m", corpus=corpus, vocab_size=300, pretrain_steps=0)


CORPUS = ["print('hello world')", "int main() { return 0; }"] * 10
_KILLED_BUILD = """
import sys
from halo_forge.tiny_model import build_tiny_model
build_tiny_model(sys.argv[1], corpus={corpus!r}, vocab_size=300, pretrain_steps=1_000_000,
                 pretrain_batch=1, pretrain_max_length=8)
"""


@pytest.mark.slow
def test_a_killed_build_leaves_nothing_for_the_next_build(tmp_path) -> None:
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "m"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_BUILD.format(corpus=CORPUS), str(out)],
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    # Killed while it pretrains: its temporary folder already holds the config.
    while not list(tmp_path.glob(".m.tmp*/config.json")):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the build never started writing its folder"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert list(tmp_path.glob(".m.tmp*")) and not out.exists()
    assert build_tiny_model(out, corpus=CORPUS, vocab_size=300, pretrain_steps=0) == out
    assert (out / MARKER).is_file() and not list(tmp_path.glob(".m.tmp*"))


def test_old_per_pid_temp_folders_go_only_when_their_builder_is_gone(tmp_path) -> None:
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()
    alive = subprocess.Popen(["sleep", "300"])
    try:
        for pid in (gone.pid, alive.pid):
            (tmp_path / f".m.tmp{pid}").mkdir()
            (tmp_path / f".m.tmp{pid}" / "config.json").write_text("{}")
        build_tiny_model(tmp_path / "m", corpus=CORPUS, vocab_size=300, pretrain_steps=0)
        assert [p.name for p in tmp_path.glob(".m.tmp*")] == [f".m.tmp{alive.pid}"]
    finally:
        alive.kill()
        alive.wait()


def test_the_build_holds_the_folder_lock(tmp_path, monkeypatch) -> None:
    import fcntl

    from halo_forge import tiny_model

    real = tiny_model._train_tokenizer
    seen = []

    def check_lock(*args, **kwargs):
        with open(tmp_path / ".m.lock") as other:  # another builder's view of the lock
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
                seen.append("free")
            except BlockingIOError:
                seen.append("held")
        return real(*args, **kwargs)

    monkeypatch.setattr(tiny_model, "_train_tokenizer", check_lock)
    build_tiny_model(tmp_path / "m", corpus=CORPUS, vocab_size=300, pretrain_steps=0)
    assert seen == ["held"]


def test_heads_option_gives_wide_heads_and_the_default_shape_is_unchanged(tmp_path) -> None:
    import json

    wide = build_tiny_model(tmp_path / "wide", corpus=CORPUS, vocab_size=300, pretrain_steps=0,
                            heads=1)
    cfg = json.loads((wide / "config.json").read_text())
    # vLLM's CPU attention needs 64-wide heads; kv heads follow (a group cannot exceed heads).
    assert cfg["hidden_size"] // cfg["num_attention_heads"] == 64
    assert cfg["num_key_value_heads"] == 1
    narrow = build_tiny_model(tmp_path / "narrow", corpus=CORPUS, vocab_size=300,
                              pretrain_steps=0)
    cfg = json.loads((narrow / "config.json").read_text())
    assert (cfg["num_attention_heads"], cfg["num_key_value_heads"]) == (4, 2)
    with pytest.raises(HaloError, match="multiple of heads"):
        build_tiny_model(tmp_path / "bad", corpus=CORPUS, vocab_size=300, pretrain_steps=0,
                         heads=3)


def test_a_narrow_model_on_cpu_runs_torch_on_one_thread(tiny_model) -> None:
    # The tiny recipe's 64-wide matrices gain nothing from threads, whose spinning on a busy
    # machine cost the CPU recipe 3.4x its CPU time; a wide model or a GPU keeps the default.
    import types

    import torch

    from halo_forge.generate.base import TransformersConfig
    from halo_forge.generate.transformers_backend import TransformersBackend
    from halo_forge.model_loading import fit_cpu_threads

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        wide = types.SimpleNamespace(config=types.SimpleNamespace(hidden_size=4096))
        fit_cpu_threads(wide, "cpu")
        assert torch.get_num_threads() == 2
        TransformersBackend(TransformersConfig(model=str(tiny_model), device="cpu"))
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        narrow = types.SimpleNamespace(config=types.SimpleNamespace(hidden_size=64))
        fit_cpu_threads(narrow, "cuda:0")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)

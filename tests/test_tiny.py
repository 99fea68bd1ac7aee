"""The tiny model builder: a real, loadable chat model folder, built on the fly."""

from __future__ import annotations

import pytest

from halo_forge.data.chat import render_chatml
from halo_forge.errors import HaloError
from halo_forge.tiny import IM_END, IM_START, MARKER, build_tiny_model


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

"""Issue #18's vLLM defects that are checkable without vLLM: LoRA rank vs the engine's
max_lora_rank, the ids sent to the engine, prompts that cannot fit, building the engine off the
event loop, launches vLLM cannot serve, and memory plans that fail hours in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from halo_forge.cli import build_parser, main
from halo_forge.config import parse_config
from halo_forge.errors import HaloError
from halo_forge.generate.base import VLLMConfig

VLLM = '[generation.engine]\nbackend = "vllm"\n'


def _pipeline(extra: str) -> str:
    return "[model]\ntiny = true\n" + extra


# --- 2: LoRA rank --------------------------------------------------------------------------

def test_max_lora_rank_must_be_one_vllm_accepts():
    with pytest.raises(ValueError, match=r"max_lora_rank must be one of vLLM's \[1, 8, 16, 32"):
        VLLMConfig(max_lora_rank=48)
    assert VLLMConfig(max_lora_rank=320).max_lora_rank == 320


def test_sft_rank_above_the_engine_rank_is_a_config_error_naming_the_fix():
    with pytest.raises(HaloError) as err:
        parse_config(_pipeline("[sft]\nlora_rank = 100\n" + VLLM + "max_lora_rank = 64\n"))
    message = str(err.value)
    assert "\n" not in message
    assert "sft.lora_rank = 100" in message and "max_lora_rank = 128" in message
    # Honest controls: equal ranks pass, and the transformers backend has no such limit.
    assert parse_config(_pipeline("[sft]\nlora_rank = 64\n" + VLLM)).sft.lora_rank == 64
    assert parse_config(_pipeline("[sft]\nlora_rank = 100\n")).sft.lora_rank == 100


def test_shipped_gpu_recipe_passes_the_checks():
    from halo_forge.config import load_config
    from halo_forge.examples import EXAMPLES_DIR

    config, _ = load_config(EXAMPLES_DIR / "qwen7b-gpu.toml")
    assert isinstance(config.generation.engine, VLLMConfig)
    assert config.sft.lora_rank <= config.generation.engine.max_lora_rank


def _adapter(folder: Path, rank: int) -> Path:
    from halo_forge.model_loading import AdapterMeta, write_adapter_meta

    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": rank}))
    write_adapter_meta(folder, AdapterMeta(base_model="some/base"))
    return folder


def test_raft_train_checks_the_checkpoint_rank_against_max_lora_rank(tmp_path, capsys):
    from halo_forge.cli.raft import build_config

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("")
    adapter = _adapter(tmp_path / "a", rank=32)
    argv = ["raft", "train", "--checkpoint", str(adapter), "--prompts", str(prompts),
            "--output", str(tmp_path / "out"), "--backend", "vllm"]
    with pytest.raises(HaloError, match=r"rank = 32 is above --max-lora-rank = 16"):
        build_config(build_parser().parse_args([*argv, "--max-lora-rank", "16"]))
    assert main([*argv, "--max-lora-rank", "12"]) == 2
    err = capsys.readouterr().err
    assert "max_lora_rank must be one of vLLM's" in err
    # The flag reaches the engine; with a rank that fits, only the empty prompts file is left
    # to complain about.
    with pytest.raises(HaloError, match="no prompts"):
        build_config(build_parser().parse_args([*argv, "--max-lora-rank", "32"]))
    with pytest.raises(HaloError, match="--max-lora-rank is a vllm setting"):
        build_config(build_parser().parse_args([*argv[:-2], "--max-lora-rank", "32"]))


def test_benchmark_run_checks_the_adapter_rank(tmp_path):
    from halo_forge.cli.benchmark import _backend_config

    adapter = _adapter(tmp_path / "a", rank=128)
    base = ["benchmark", "run", "--prompts", "x", "--model", "some/base", "--adapter",
            str(adapter), "--backend", "vllm"]
    with pytest.raises(HaloError, match=r"rank = 128 is above --max-lora-rank = 64"):
        _backend_config(build_parser().parse_args(base))
    config = _backend_config(build_parser().parse_args([*base, "--max-lora-rank", "128"]))
    assert config.max_lora_rank == 128


# --- 3: the ids sent to the engine ---------------------------------------------------------

class _BosTokenizer:
    """A character tokenizer that, like Llama 3's, adds BOS unless told not to, and whose chat
    template writes BOS itself."""

    bos = "<s>"
    chat_template = "{{ bos_token }}..."  # present: apply_chat_template is used

    def apply_chat_template(self, messages, *, tokenize, add_generation_prompt):
        assert tokenize is False
        text = self.bos + "".join(f"[{m['role']}]{m['content']}" for m in messages)
        return text + ("[assistant]" if add_generation_prompt else "")

    def encode(self, text: str) -> list[int]:
        ids, i = [], 0
        while i < len(text):
            if text.startswith(self.bos, i):
                ids.append(1)
                i += len(self.bos)
            else:
                ids.append(3 + ord(text[i]))
                i += 1
        return ids

    def __call__(self, text: str, add_special_tokens: bool = True):
        return {"input_ids": ([1] if add_special_tokens else []) + self.encode(text)}


def test_engine_gets_the_prompt_ids_training_sees(monkeypatch):
    """vLLM tokenizes a text prompt itself (BOS added unless tokenization_kwargs say not to);
    the fake engine does the same and records what it would feed the model."""
    import anyio

    from halo_forge.data.chat import generation_prompt
    from halo_forge.data.registry import load_problems
    from halo_forge.generate import SamplingSettings, vllm_backend

    tokenizer = _BosTokenizer()
    seen: list[list[int]] = []

    class Out:
        def __init__(self, ids):
            self.prompt_token_ids = ids
            self.outputs = [type("C", (), {"text": "x", "token_ids": [5]})()]

    class LLM:
        def __init__(self, **kwargs):
            pass

        def get_tokenizer(self):
            return tokenizer

        def generate(self, prompts, params, *, lora_request=None, use_tqdm=True,
                     tokenization_kwargs=None):
            outs = []
            for p in prompts:
                ids = tokenizer(p, **(tokenization_kwargs or {}))["input_ids"]
                seen.append(ids)
                outs.append(Out(ids))
            return outs

    monkeypatch.setattr(vllm_backend, "_import_vllm",
                        lambda: (LLM, lambda **kw: kw, lambda *a: a))
    backend = vllm_backend.VLLMBackend(VLLMConfig(model="m", probe="off"))
    problem = load_problems("builtin")[0]

    async def go():
        return [b async for b in backend.stream([problem], samples_per_prompt=1,
                                                 params=SamplingSettings())]

    anyio.run(go)
    # Training tokenizes the chat-templated text with add_special_tokens=False (train.py).
    text = generation_prompt(problem, tokenizer=tokenizer, system=backend.system)
    training = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert seen == [training]
    assert seen[0].count(1) == 1  # one BOS, the template's

"""The vllm adapter against a fake `vllm` module that records calls and checks them against
vLLM's documented offline API (vLLM itself needs a GPU and is not installed here)."""

from __future__ import annotations

import json
import sys
import types
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest

from halo_forge.data.registry import load_problems
from halo_forge.errors import HaloError
from halo_forge.generate import SamplingSettings, VLLMConfig, make_backend
from halo_forge.model_loading import ADAPTER_META

LLM_ARGS = {"model", "enable_lora", "max_lora_rank", "max_loras", "enable_sleep_mode",
            "tensor_parallel_size", "dtype", "seed", "gpu_memory_utilization", "max_model_len"}
SAMPLING_ARGS = {"n", "temperature", "top_p", "max_tokens", "stop", "seed", "logprobs"}


@dataclass
class CompletionOutput:
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None = None


@dataclass
class RequestOutput:
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput] = field(default_factory=list)


class LoRARequest:
    def __init__(self, lora_name: str, lora_int_id: int, lora_path: str) -> None:
        self.lora_name, self.lora_int_id, self.lora_path = lora_name, lora_int_id, lora_path


class SamplingParams:
    def __init__(self, **kwargs) -> None:
        unknown = set(kwargs) - SAMPLING_ARGS
        assert not unknown, f"not a documented SamplingParams argument: {unknown}"
        assert kwargs.get("n", 1) >= 1
        stop = kwargs.get("stop")
        assert stop is None or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
        self.__dict__.update(kwargs)


class LLM:
    instances: list[LLM] = []
    ignore_lora = False  # behave like a stale cache: every adapter serves the base weights

    def __init__(self, **kwargs) -> None:
        unknown = set(kwargs) - LLM_ARGS
        assert not unknown, f"not a documented LLM argument: {unknown}"
        self.kwargs = kwargs
        self.calls: list[tuple] = []
        self.cache: dict[int, str] = {}  # lora_int_id -> path, as vLLM's LoRA cache
        LLM.instances.append(self)

    def get_tokenizer(self):
        return types.SimpleNamespace(chat_template=None)  # the adapter falls back to ChatML

    def generate(self, prompts, sampling_params, *, lora_request=None, use_tqdm=True,
                 tokenization_kwargs=None):
        assert isinstance(prompts, list) and isinstance(sampling_params, SamplingParams)
        assert tokenization_kwargs == {"add_special_tokens": False}  # the ids training sees
        self.calls.append(("generate", len(prompts), sampling_params, lora_request))
        weights = "base"
        if lora_request is not None and not LLM.ignore_lora:
            assert isinstance(lora_request, LoRARequest) and lora_request.lora_int_id >= 1
            # Read once per id, as vLLM does: a reused id serves the weights first read.
            if lora_request.lora_int_id not in self.cache:
                version = Path(lora_request.lora_path, "adapter_model.safetensors")
                self.cache[lora_request.lora_int_id] = (
                    f"{lora_request.lora_path}@{version.read_text() if version.exists() else 0}")
            weights = self.cache[lora_request.lora_int_id]
        outs = []
        for p in prompts:
            outs.append(RequestOutput(prompt_token_ids=list(range(len(p) // 4)), outputs=[
                CompletionOutput(text=f"```python\nprint({weights!r}, {i})\n```",
                                 token_ids=[zlib.crc32(weights.encode()) % 1000, i, 2],
                                 cumulative_logprob=-float(zlib.crc32(weights.encode())) - i)
                for i in range(sampling_params.n)]))
        return outs

    def sleep(self, level: int = 1) -> None:
        self.calls.append(("sleep", level))

    def wake_up(self) -> None:
        self.calls.append(("wake_up",))


@pytest.fixture
def fake_vllm(monkeypatch):
    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, SamplingParams
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = LoRARequest
    vllm.lora, lora.request = lora, request
    for name, mod in (("vllm", vllm), ("vllm.lora", lora), ("vllm.lora.request", request)):
        monkeypatch.setitem(sys.modules, name, mod)
    LLM.instances.clear()
    monkeypatch.setattr(LLM, "ignore_lora", False)
    return LLM


def adapter(tmp_path, name: str, base: str = "Qwen/Qwen2.5-Coder-7B-Instruct") -> str:
    d = tmp_path / name
    d.mkdir()
    (d / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base, "r": 16}))
    (d / ADAPTER_META).write_text(json.dumps({"base_model": base}))
    return str(d)


def stream(backend, problems, n, settings):
    async def go():
        return [b async for b in backend.stream(problems, samples_per_prompt=n, params=settings)]
    return anyio.run(go)


def test_engine_and_sampling_follow_the_documented_api(fake_vllm, tmp_path) -> None:
    a1 = adapter(tmp_path, "cycle1")
    backend = make_backend(VLLMConfig(adapter=a1, tensor_parallel_size=2, max_lora_rank=32,
                                      batch_size=2))
    llm = fake_vllm.instances[0]
    assert llm.kwargs["model"] == "Qwen/Qwen2.5-Coder-7B-Instruct"  # from the adapter's meta
    assert llm.kwargs["enable_lora"] is True and llm.kwargs["max_lora_rank"] == 32
    assert llm.kwargs["tensor_parallel_size"] == 2 and llm.kwargs["enable_sleep_mode"] is True
    problems = load_problems("builtin")[:3]
    settings = SamplingSettings(temperature=0.7, top_p=0.9, max_new_tokens=128,
                                stop=["<|im_end|>"], seed=9)
    batches = stream(backend, problems, 4, settings)
    assert [len(b) for b in batches] == [8, 4]  # 2 prompts x 4, then 1 x 4
    gen = [c for c in llm.calls if c[0] == "generate"][-2:]
    assert [n_prompts for _, n_prompts, _, _ in gen] == [2, 1]
    for _, _, sp, lora in gen:
        assert (sp.n, sp.temperature, sp.top_p, sp.max_tokens, sp.stop, sp.seed) == \
            (4, 0.7, 0.9, 128, ["<|im_end|>"], 9)
        assert lora.lora_path == a1
    samples = [s for b in batches for s in b]
    assert {(s.problem_id, s.index) for s in samples} == {(p.id, i) for p in problems
                                                         for i in range(4)}
    assert all(a1 in s.completion and s.completion.startswith("```python\nprint(")
               for s in samples)  # the adapter's outputs
    assert all(s.code == "" for s in samples)  # extraction is the verifier's, not generation's
    assert all(s.params.adapter == a1 and s.completion_tokens == 3 for s in samples)
    assert batches[0].stats.completion_tokens == 24 and batches[0].stats.samples == 8


def test_each_adapter_gets_a_new_name_and_id_and_is_probed(fake_vllm, tmp_path) -> None:
    backend = make_backend(VLLMConfig(model="Qwen/Qwen2.5-Coder-7B-Instruct"))
    llm = fake_vllm.instances[0]
    path = adapter(tmp_path, "run")
    for cycle in range(3):  # the same path, retrained each cycle
        Path(path, "adapter_model.safetensors").write_text(f"weights of cycle {cycle}")
        backend.load_adapter(path)
    requests = [c[3] for c in llm.calls if c[0] == "generate" and c[3] is not None]
    ids = [r.lora_int_id for r in requests]
    assert sorted(set(ids)) == [1, 2, 3] and min(ids) >= 1
    assert len({r.lora_name for r in requests}) == 3
    assert all(str(r.lora_int_id) in r.lora_name for r in requests)
    probes = [c[2] for c in llm.calls if c[0] == "generate"]
    assert all(sp.temperature == 0.0 and sp.seed == 0 and sp.n == 1 for sp in probes)
    backend.load_adapter(None)
    out = stream(backend, load_problems("builtin")[:1], 1, SamplingSettings())
    assert "'base'" in out[0].samples[0].completion


def test_a_stale_adapter_is_caught_by_the_probe(fake_vllm, tmp_path) -> None:
    fake_vllm.ignore_lora = True
    backend = make_backend(VLLMConfig(model="Qwen/Qwen2.5-Coder-7B-Instruct"))
    with pytest.raises(HaloError, match="not applied.*base model"):
        backend.load_adapter(adapter(tmp_path, "a"))
    warn = make_backend(VLLMConfig(model="Qwen/Qwen2.5-Coder-7B-Instruct", probe="warn"))
    warn.load_adapter(adapter(tmp_path, "b"))
    assert warn.adapter.endswith("b")


def test_sleep_and_wake_up_around_training(fake_vllm) -> None:
    backend = make_backend(VLLMConfig(model="m"))
    llm = fake_vllm.instances[0]
    backend.sleep()
    backend.sleep()  # already asleep: not offloaded twice
    with pytest.raises(HaloError, match="asleep"):
        stream(backend, load_problems("builtin")[:1], 1, SamplingSettings())
    backend.wake_up()
    assert [c for c in llm.calls if c[0] != "generate"] == [("sleep", 1), ("wake_up",)]
    assert len(stream(backend, load_problems("builtin")[:1], 2, SamplingSettings())[0]) == 2


def test_without_vllm_installed_the_error_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    with pytest.raises(HaloError, match=r"pip install 'halo-forge\[vllm\]'"):
        make_backend(VLLMConfig(model="m"))

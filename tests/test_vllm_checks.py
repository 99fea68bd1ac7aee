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


# --- 5: the engine is built off the event loop ---------------------------------------------

@pytest.mark.anyio
async def test_backend_is_built_while_other_tasks_keep_running(tmp_path, monkeypatch):
    """A constructor that returns only once a concurrently running task has ticked three
    times: on the event loop's own thread it would wait for ticks that never come."""
    import threading

    import anyio

    from halo_forge import generate
    from halo_forge.pipeline import Pipeline

    ticked = threading.Event()
    built_on: list[int] = []

    def slow_make_backend(engine):
        built_on.append(threading.get_ident())
        assert ticked.wait(timeout=30), "the event loop did not run while the engine built"
        return type("B", (), {"model": engine.model, "adapter": "", "close": lambda s: None})()

    monkeypatch.setattr(generate, "make_backend", slow_make_backend)
    pipe = Pipeline(parse_config(_pipeline(f'[output]\ndir = "{tmp_path}"\n')))
    ticks = 0

    async def ticker():
        nonlocal ticks
        while ticks < 3:
            ticks += 1
            await anyio.sleep(0)
        ticked.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        backend = await pipe._backend_ready("some/model", "")
    assert backend.model == "some/model" and ticks == 3
    assert built_on and built_on[0] != threading.get_ident()


# --- 6 and 8: launches and memory plans vLLM cannot serve -------------------------------------

def test_a_multi_process_launch_is_refused_naming_the_right_command():
    from halo_forge.generate.vllm_preflight import check_launch

    with pytest.raises(HaloError) as err:
        check_launch(VLLMConfig(), env={"WORLD_SIZE": "4", "RANK": "1"})
    message = str(err.value)
    assert "\n" not in message
    assert "python -m halo_forge run" in message and "tensor_parallel_size = 4" in message
    check_launch(VLLMConfig(), env={"WORLD_SIZE": "1"})  # one process: fine
    from halo_forge.generate.base import TransformersConfig

    check_launch(TransformersConfig(), env={"WORLD_SIZE": "4"})  # not an engine per rank


def test_pipeline_refuses_a_launcher_before_touching_the_output(tmp_path, monkeypatch):
    from halo_forge.pipeline import Pipeline

    monkeypatch.setenv("WORLD_SIZE", "2")
    out = tmp_path / "run"
    with pytest.raises(HaloError, match="tensor_parallel_size = 2"):
        Pipeline(parse_config(_pipeline(f'[output]\ndir = "{out}"\n' + VLLM)))
    assert not out.exists()


@pytest.mark.parametrize("engine, gpus, env, expected", [
    ({"enable_sleep_mode": False}, 1, {}, "enable_sleep_mode = false leaves training no GPU"),
    ({}, 1, {"PYTORCH_CUDA_ALLOC_CONF": "max_split_size_mb:64, expandable_segments:True"},
     "expandable_segments:True, which vLLM's sleep mode refuses"),
    ({"tensor_parallel_size": 4}, 2, {}, "tensor_parallel_size = 4 but 2 GPU"),
])
def test_memory_plans_that_fail_later_are_refused(engine, gpus, env, expected):
    from halo_forge.generate.vllm_preflight import check_memory_plan

    with pytest.raises(HaloError, match=expected.replace("(", r"\(")) as err:
        check_memory_plan(VLLMConfig(**engine), gpus=gpus, env=env)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("engine, gpus, env", [
    ({}, 1, {}),  # sleep mode on one GPU: the plan the GPU recipe uses
    ({"enable_sleep_mode": False}, 2, {}),  # training has the second GPU
    ({"enable_sleep_mode": False}, 0, {}),  # the CPU engine: no sleep mode there
    # Without sleep mode, vLLM has nothing against expandable segments.
    ({"enable_sleep_mode": False}, 2, {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}),
    ({}, 1, {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:False"}),
])
def test_memory_plans_that_work_pass(engine, gpus, env):
    from halo_forge.generate.vllm_preflight import check_memory_plan

    check_memory_plan(VLLMConfig(**engine), gpus=gpus, env=env)


# --- 4: prompts that cannot fit the context -------------------------------------------------

def test_prompts_that_cannot_fit_are_dropped_counted_and_named(tiny_model):
    from halo_forge.data.chat import DEFAULT_SYSTEM, generation_prompt, load_tokenizer
    from halo_forge.data.registry import load_problems
    from halo_forge.prompt_fit import describe_dropped, fit_prompts

    tokenizer = load_tokenizer(str(tiny_model))
    problems = load_problems("builtin")[:4]
    long = msgspec_replace(problems[0], id="long", prompt=problems[0].prompt * 40)
    lengths = {p.id: len(tokenizer(generation_prompt(p, tokenizer=tokenizer,
                                                     system=DEFAULT_SYSTEM),
                                   add_special_tokens=False)["input_ids"])
               for p in [*problems, long]}
    limit = max(lengths[p.id] for p in problems) + 64
    assert lengths["long"] + 64 > limit
    kept, dropped = fit_prompts([*problems, long], tokenizer=tokenizer, system=DEFAULT_SYSTEM,
                                max_new_tokens=64, limit=limit)
    assert [p.id for p in kept] == [p.id for p in problems]  # the boundary one fits exactly
    assert dropped == [("long", lengths["long"])]
    message = describe_dropped(dropped, max_new_tokens=64, limit=limit)
    assert "dropped 1 prompt(s)" in message and "long" in message and "\n" not in message


def msgspec_replace(struct, **changes):
    import msgspec

    return msgspec.structs.replace(struct, **changes)


def test_pipeline_drops_over_long_prompts_when_data_is_loaded(tiny_model, tmp_path):
    from halo_forge.pipeline import Pipeline

    config = parse_config(_pipeline(
        f'[output]\ndir = "{tmp_path / "run"}"\nprogress = "plain"\n'
        '[data]\nlanguages = ["python"]\n'
        "[generation]\nmax_new_tokens = 64\n"))
    from halo_forge.prompt_fit import context_length

    assert context_length(str(tiny_model), config.generation.engine) == 2048
    pipe = Pipeline(config)
    pipe.open()
    try:
        train, test = pipe._data(str(tiny_model))
        assert pipe.states.load("data").result["too_long"] == 0
    finally:
        pipe._lock.release()
    # The same problems against a context too small for any of them: all dropped, counted.
    small = Pipeline(parse_config(_pipeline(
        f'[output]\ndir = "{tmp_path / "run2"}"\nprogress = "plain"\n'
        '[data]\nlanguages = ["python"]\n[generation]\nmax_new_tokens = 64\n'
        '[generation.engine]\nbackend = "vllm"\nmax_model_len = 80\n')))
    kept, kept_test = small._fitting(str(tiny_model), train, test)
    assert kept == [] and kept_test == [] and small._too_long == len(train) + len(test)


# --- 8: Ctrl-C reaches the run, not the engine --------------------------------------------------

def test_the_engine_starts_with_sigint_blocked_and_the_caller_gets_its_mask_back(monkeypatch):
    """vLLM's engine processes inherit the mask of the thread that builds the LLM: with SIGINT
    blocked there, a terminal's Ctrl-C (sent to the whole process group) cannot shut the engine
    down under a generate() in flight; the run stops at its safe point and closes it.
    tests/test_vllm_engine.py sends the real Ctrl-C to the real engine."""
    import signal

    from halo_forge.generate import vllm_backend

    masks: list[set] = []

    class LLM:
        def __init__(self, **kwargs):
            # What a process started here would inherit.
            masks.append(set(signal.pthread_sigmask(signal.SIG_BLOCK, [])))

        def get_tokenizer(self):
            return None

    monkeypatch.setattr(vllm_backend, "_import_vllm",
                        lambda: (LLM, lambda **kw: kw, lambda *a: a))
    before = set(signal.pthread_sigmask(signal.SIG_BLOCK, []))
    assert signal.SIGINT not in before
    vllm_backend.VLLMBackend(VLLMConfig(model="m", probe="off"))
    assert masks and signal.SIGINT in masks[0]
    assert set(signal.pthread_sigmask(signal.SIG_BLOCK, [])) == before

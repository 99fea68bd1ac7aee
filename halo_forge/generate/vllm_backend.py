"""Generation with vLLM's offline engine (optional extra: `pip install 'halo-forge[vllm]'`).

The one place halo-forge touches vLLM, using only its documented offline API:
`LLM(model, enable_lora=True, max_lora_rank, enable_sleep_mode, tensor_parallel_size, ...)`,
`SamplingParams(n, temperature, top_p, max_tokens, stop, seed)`,
`LoRARequest(lora_name, lora_int_id, lora_path)`, `llm.generate(prompts, params,
lora_request=...)`, `llm.sleep(level=1)` / `llm.wake_up()`.

vLLM caches adapters by name and id, so every new adapter gets a new name and a new id (a
reused one serves the old weights); and after loading one, a greedy fixed-seed probe must
differ from the base model's and the previous adapter's output, or the run stops (or warns,
per config) instead of spending days training on samples of the wrong model.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import anyio

from halo_forge.data.chat import DEFAULT_SYSTEM, apply_chat_template, generation_prompt
from halo_forge.errors import HaloError
from halo_forge.generate.base import (
    Batch,
    BatchStats,
    SamplingSettings,
    VLLMConfig,
    check_samples_per_prompt,
    chunked,
    generation_params,
    make_sample,
)
from halo_forge.model_loading import read_adapter_meta, resolve
from halo_forge.records import Problem, Sample

log = logging.getLogger(__name__)

PROBE_MESSAGES = [
    {"role": "user", "content": "Write a Python function that returns the sum of a list of "
                                "integers, and a short test for it."},
]


# The chat template already wrote every special token the model expects (Llama 3 and Gemma
# templates emit BOS); vLLM would add another by default. Training tokenizes the same text with
# add_special_tokens=False, and generation must see the same ids.
TOKENIZATION = {"add_special_tokens": False}


@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread while vLLM starts its engine processes, which inherit the
    mask. A terminal's Ctrl-C goes to the whole process group, and vLLM's engine core shuts
    down at once on SIGINT: the generate() in flight would die with the engine's traceback
    instead of the run stopping at its next safe point and closing the engine itself. The
    sandbox's zygote (its own process group) and a training child (its own session) are kept
    out of the terminal's reach the same way. SIGTERM still ends the engine."""
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX
        yield
        return
    # multiprocessing starts its resource tracker (on the first spawned process) with SIGINT
    # blocked and then unblocks it in the calling thread, undoing ours: started first, it is
    # left alone. (vLLM spawns its engine on CPU and wherever CUDA is already initialized.)
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _import_vllm() -> tuple[Any, Any, Any]:
    try:
        from vllm import LLM, SamplingParams
        from vllm.lora.request import LoRARequest
    except ImportError as exc:
        raise HaloError(f"the vllm backend needs vLLM ({exc.name or exc} is not importable): "
                        "pip install 'halo-forge[vllm]', or use backend = \"transformers\"") \
            from None
    return LLM, SamplingParams, LoRARequest


class VLLMBackend:
    name = "vllm"

    def __init__(self, config: VLLMConfig) -> None:
        self.config = config
        self._LLM, self._SamplingParams, self._LoRARequest = _import_vllm()
        self.model, adapter = resolve(config.model, config.adapter)
        self.system = DEFAULT_SYSTEM if config.system is None else (config.system or None)
        kwargs: dict[str, Any] = dict(
            model=self.model, enable_lora=True, max_lora_rank=config.max_lora_rank, max_loras=1,
            tensor_parallel_size=config.tensor_parallel_size, dtype=config.dtype,
            seed=config.seed, gpu_memory_utilization=config.gpu_memory_utilization,
            enable_sleep_mode=config.enable_sleep_mode,
        )
        if config.max_model_len is not None:
            kwargs["max_model_len"] = config.max_model_len
        with sigint_blocked():
            self.llm = self._LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.adapter = ""
        self._lora: Any = None
        self._next_id = 0  # LoRARequest ids start at 1 and are never reused
        self._probes: dict[str, Any] = {}  # "" (base) and adapter name -> probe signature
        self._asleep = False
        if adapter:
            self.load_adapter(adapter)

    # --- adapters ------------------------------------------------------------------------

    def _probe(self, lora: Any) -> tuple[tuple[int, ...], float | None]:
        params = self._SamplingParams(n=1, temperature=0.0, top_p=1.0,
                                      max_tokens=self.config.probe_tokens, seed=0, logprobs=1)
        prompt = apply_chat_template(PROBE_MESSAGES, tokenizer=self.tokenizer,
                                     add_generation_prompt=True)
        out = self.llm.generate([prompt], params, lora_request=lora, use_tqdm=False,
                                tokenization_kwargs=TOKENIZATION)[0].outputs[0]
        # The log-probability moves with any change in the weights, even when the greedy text
        # does not.
        logprob = out.cumulative_logprob
        return tuple(out.token_ids), None if logprob is None else round(float(logprob), 4)

    def load_adapter(self, path: str | None) -> None:
        """Generate with the LoRA adapter at `path` from now on (None or "": the base model)."""
        if not path:
            self._lora, self.adapter = None, ""
            return
        meta = read_adapter_meta(path)
        if meta.base_model != self.model:
            log.warning("adapter %s was trained on %s, generating with %s", path,
                        meta.base_model, self.model)
        if self.config.probe != "off" and "" not in self._probes:
            self._probes[""] = self._probe(None)
        self._next_id += 1
        lora = self._LoRARequest(f"halo-forge-{self._next_id}", self._next_id, str(path))
        if self.config.probe != "off":
            signature = self._probe(lora)
            before = [("the base model", self._probes[""])]
            if self._lora is not None and self._lora.lora_name in self._probes:
                before.append((f"the previous adapter {self.adapter}",
                               self._probes[self._lora.lora_name]))
            for what, old in before:
                if signature == old:
                    msg = (f"adapter {path} is not applied: the probe's output equals {what}'s "
                           "(stale vLLM LoRA cache, or an untrained adapter); set probe = "
                           "\"warn\" to continue anyway")
                    if self.config.probe == "error":
                        raise HaloError(msg)
                    log.warning(msg)
            self._probes = {"": self._probes[""], lora.lora_name: signature}
        self._lora, self.adapter = lora, str(path)

    # --- generation ----------------------------------------------------------------------

    async def stream(self, problems: Sequence[Problem], *, samples_per_prompt: int,
                     params: SamplingSettings, cycle: int = 0) -> AsyncIterator[Batch]:
        check_samples_per_prompt(samples_per_prompt)
        if self._asleep:
            raise HaloError("the vllm backend is asleep; call wake_up() before generating")
        sp = self._SamplingParams(
            n=samples_per_prompt, temperature=params.temperature, top_p=params.top_p,
            max_tokens=params.max_new_tokens, stop=list(params.stop) or None, seed=params.seed)
        gp = generation_params(model=self.model, adapter=self.adapter, settings=params,
                               seed=params.seed)
        for window in chunked(problems, self.config.batch_size):
            prompts = [generation_prompt(p, tokenizer=self.tokenizer, system=self.system)
                       for p in window]
            start = time.perf_counter()
            outputs = await anyio.to_thread.run_sync(self._generate, prompts, sp, self._lora)
            wall = time.perf_counter() - start
            samples: list[Sample] = []
            for problem, request in zip(window, outputs):  # outputs keep the prompts' order
                n_prompt = len(request.prompt_token_ids or ())
                for index, out in enumerate(request.outputs):
                    samples.append(make_sample(
                        problem, cycle=cycle, index=index, completion=out.text,
                        prompt_tokens=n_prompt, completion_tokens=len(out.token_ids), params=gp))
            yield Batch(samples, BatchStats(
                samples=len(samples), prompt_tokens=sum(s.prompt_tokens for s in samples),
                completion_tokens=sum(s.completion_tokens for s in samples), wall_s=wall))

    def _generate(self, prompts: list[str], sp: Any, lora: Any) -> list[Any]:
        return self.llm.generate(prompts, sp, lora_request=lora, use_tqdm=False,
                                 tokenization_kwargs=TOKENIZATION)

    # --- accelerator memory --------------------------------------------------------------

    def sleep(self) -> None:
        """Offload the weights to CPU and drop the KV cache so training can use the GPU."""
        if self.config.enable_sleep_mode and not self._asleep:
            self.llm.sleep(level=1)
            self._asleep = True

    def wake_up(self) -> None:
        if self._asleep:
            self.llm.wake_up()
            self._asleep = False

    def close(self) -> None:
        self.llm = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover - torch is a core dependency
            pass

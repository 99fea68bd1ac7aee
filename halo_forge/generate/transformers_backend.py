"""Generation with transformers: a base model plus a PEFT LoRA adapter, batched, CPU or GPU.

Rows (one per sample: each prompt repeated samples_per_prompt times) are left-padded into
batches of `batch_size` and sampled with one `generate()` call each, in a worker thread so the
event loop keeps verifying while the model works. This is the backend the tests and the CPU
recipe use; vLLM is the fast one on GPUs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio

from halo_forge.data.chat import DEFAULT_SYSTEM, generation_prompt
from halo_forge.errors import HaloError
from halo_forge.generate.base import (
    Batch,
    BatchStats,
    SamplingSettings,
    TransformersConfig,
    check_samples_per_prompt,
    chunked,
    generation_params,
    make_sample,
    truncate_at_stop,
)
from halo_forge.model_loading import (
    fit_cpu_threads,
    load_causal_lm,
    load_tokenizer,
    pick_dtype,
    read_adapter_meta,
    resolve,
)
from halo_forge.records import Problem


class TransformersBackend:
    name = "transformers"

    def __init__(self, config: TransformersConfig) -> None:
        import torch

        self.config = config
        self.model, adapter = resolve(config.model, config.adapter)
        self.system = DEFAULT_SYSTEM if config.system is None else (config.system or None)
        if config.device == "auto":
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        else:
            self.device = torch.device(config.device)
        self.tokenizer = load_tokenizer(self.model)
        self.tokenizer.padding_side = "left"  # generation continues from the right end
        dtype = pick_dtype(config.dtype, training=False)
        if self.device.type == "cpu":
            dtype = torch.float32  # half precision on CPU is slow or unsupported
        self._base = load_causal_lm(self.model, dtype=dtype).to(self.device).eval()
        fit_cpu_threads(self._base, self.device)
        self._net: Any = self._base  # the base model, or a PeftModel wrapping it
        self._lock = threading.Lock()  # one generate() at a time on this model
        self._loads = 0
        self.adapter = ""
        self._eos = self._eos_ids()
        if adapter:
            self.load_adapter(adapter)

    def _eos_ids(self) -> list[int]:
        ids: list[int] = []
        gen_eos = getattr(self._base.generation_config, "eos_token_id", None)
        for value in (gen_eos, self.tokenizer.eos_token_id):
            for i in value if isinstance(value, (list, tuple)) else [value]:
                if i is not None and i not in ids:
                    ids.append(int(i))
        return ids

    # --- adapters ------------------------------------------------------------------------

    def load_adapter(self, path: str | None) -> None:
        """Generate with the LoRA adapter at `path` from now on (None or "": the base model)."""
        from peft import PeftModel

        with self._lock:
            if not path:
                if self.adapter:
                    self._net = self._net.unload()  # drops the LoRA layers, keeps the base
                self.adapter = ""
                return
            meta = read_adapter_meta(path)
            if meta.base_model != self.model:
                # Same weights under two names is fine; say which one was trained on.
                import logging

                logging.getLogger(__name__).warning(
                    "adapter %s was trained on %s, generating with %s", path, meta.base_model,
                    self.model)
            # A fresh name per load, so a reused path (a retrained adapter) is read again.
            self._loads += 1
            name = f"a{self._loads}"
            try:
                if self.adapter:
                    old = self._net.active_adapter
                    self._net.load_adapter(path, adapter_name=name)
                    self._net.set_adapter(name)
                    self._net.delete_adapter(old)
                else:
                    self._net = PeftModel.from_pretrained(self._base, path, adapter_name=name)
            except (OSError, ValueError, KeyError, RuntimeError) as exc:
                raise HaloError(f"cannot load adapter {path} onto {self.model} "
                                f"({type(exc).__name__}: {str(exc)[:160]})") from None
            self._net.to(self.device).eval()
            self.adapter = str(path)

    # --- generation ----------------------------------------------------------------------

    def _generate(self, prompts: list[str], settings: SamplingSettings,
                  seed: int | None) -> list[tuple[str, int, int]]:
        """(completion, prompt tokens, completion tokens) per prompt; runs in a worker thread."""
        import torch

        tok = self.tokenizer
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        kwargs: dict[str, Any] = dict(
            max_new_tokens=settings.max_new_tokens, pad_token_id=tok.pad_token_id,
            eos_token_id=self._eos,
        )
        if settings.temperature > 0:
            kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p)
        else:
            kwargs.update(do_sample=False)
        if settings.stop:
            kwargs.update(stop_strings=list(settings.stop), tokenizer=tok)
        with self._lock, torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            out = self._net.generate(**enc, **kwargs)
        prompt_len = enc["input_ids"].shape[1]
        prompt_tokens = enc["attention_mask"].sum(dim=1).tolist()
        results = []
        for row, n_prompt in zip(out[:, prompt_len:].tolist(), prompt_tokens):
            # The row ends at its first end-of-sequence token; a row stopped by a stop string
            # is followed by padding instead.
            end = next((i + 1 for i, t in enumerate(row) if t in self._eos), len(row))
            while end and row[end - 1] == tok.pad_token_id and tok.pad_token_id not in self._eos:
                end -= 1
            text = tok.decode(row[:end], skip_special_tokens=True)
            results.append((truncate_at_stop(text, settings.stop), int(n_prompt), end))
        return results

    async def stream(self, problems: Sequence[Problem], *, samples_per_prompt: int,
                     params: SamplingSettings, cycle: int = 0) -> AsyncIterator[Batch]:
        check_samples_per_prompt(samples_per_prompt)
        prompts: dict[str, str] = {}
        rows = ((p, i) for p in problems for i in range(samples_per_prompt))
        for k, chunk in enumerate(chunked(rows, self.config.batch_size)):
            texts = []
            for problem, _ in chunk:
                if problem.id not in prompts:
                    prompts[problem.id] = generation_prompt(problem, tokenizer=self.tokenizer,
                                                            system=self.system)
                texts.append(prompts[problem.id])
            # One seed per batch: reproducible for a given seed and problem order.
            seed = None if params.seed is None else params.seed + k
            start = time.perf_counter()
            results = await anyio.to_thread.run_sync(self._generate, texts, params, seed)
            wall = time.perf_counter() - start
            gp = generation_params(model=self.model, adapter=self.adapter, settings=params,
                                   seed=seed)
            samples = [
                make_sample(problem, cycle=cycle, index=index, completion=text,
                            prompt_tokens=n_prompt, completion_tokens=n_completion, params=gp)
                for (problem, index), (text, n_prompt, n_completion) in zip(chunk, results)
            ]
            yield Batch(samples, BatchStats(
                samples=len(samples), prompt_tokens=sum(r[1] for r in results),
                completion_tokens=sum(r[2] for r in results), wall_s=wall))

    # --- accelerator memory --------------------------------------------------------------

    def sleep(self) -> None:
        """Move the weights to the CPU so training can use the GPU (no-op on CPU)."""
        if self.device.type != "cpu":
            import torch

            with self._lock:
                self._net.to("cpu")
            torch.cuda.empty_cache()

    def wake_up(self) -> None:
        if self.device.type != "cpu":
            with self._lock:
                self._net.to(self.device)

    def close(self) -> None:
        with self._lock:
            self._net = self._base = None
        if self.device.type == "cuda":
            import torch

            torch.cuda.empty_cache()

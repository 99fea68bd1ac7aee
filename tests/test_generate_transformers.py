"""The transformers backend on the tiny model: n samples per prompt, in bounded batches, with
the LoRA adapter applied."""

from __future__ import annotations

import anyio
import pytest

from halo_forge.data.registry import load_problems
from halo_forge.errors import HaloError
from halo_forge.generate import SamplingSettings, TransformersConfig, make_backend
from halo_forge.generate.base import truncate_at_stop
from halo_forge.train import FINAL_DIR


def collect(backend, problems, n, settings, cycle=0):
    async def run():
        return [b async for b in backend.stream(problems, samples_per_prompt=n, params=settings,
                                                cycle=cycle)]
    return anyio.run(run)


@pytest.fixture(scope="module")
def problems():
    return load_problems("builtin")[:3]


@pytest.fixture(scope="module")
def backend(tiny_model):
    b = make_backend(TransformersConfig(model=str(tiny_model), batch_size=4))
    yield b
    b.close()


def test_n_samples_per_prompt_in_bounded_batches(backend, problems) -> None:
    settings = SamplingSettings(temperature=1.0, max_new_tokens=12, seed=7)
    batches = collect(backend, problems, 3, settings, cycle=2)
    assert [len(b) for b in batches] == [4, 4, 1]
    samples = [s for b in batches for s in b]
    assert len({s.id for s in samples}) == 9
    for p in problems:
        mine = [s for s in samples if s.problem_id == p.id]
        assert sorted(s.index for s in mine) == [0, 1, 2]
        assert all(s.id == f"{p.id}/c2/s{s.index}" and s.language == p.language for s in mine)
    assert all(0 < s.completion_tokens <= 12 and s.prompt_tokens > 20 for s in samples)
    assert all(s.params.seed is not None and s.params.max_new_tokens == 12 for s in samples)
    for b in batches:
        assert b.stats.samples == len(b) and b.stats.wall_s > 0
        assert b.stats.samples_per_s > 0 and b.stats.tokens_per_s > 0
    # The same seed reproduces the same samples; a different one does not.
    again = [s.completion for b in collect(backend, problems, 3, settings) for s in b]
    assert again == [s.completion for s in samples]
    other = collect(backend, problems, 3, SamplingSettings(max_new_tokens=12, seed=8))
    assert [s.completion for b in other for s in b] != again


@pytest.mark.slow
def test_adapter_changes_the_outputs_and_can_be_switched(backend, problems,
                                                         trained_adapter) -> None:
    _, out = trained_adapter
    settings = SamplingSettings(temperature=1.0, max_new_tokens=16, seed=11)
    base = [s.completion for b in collect(backend, problems, 2, settings) for s in b]
    backend.load_adapter(str(out / FINAL_DIR))
    try:
        tuned_batches = collect(backend, problems, 2, settings)
        tuned = [s.completion for b in tuned_batches for s in b]
        assert len(tuned) == 6 and tuned != base
        assert all(s.params.adapter == str(out / FINAL_DIR) for b in tuned_batches for s in b)
        backend.load_adapter(str(out / FINAL_DIR))  # loading it again: the same outputs
        assert [s.completion for b in collect(backend, problems, 2, settings) for s in b] == tuned
    finally:
        backend.load_adapter(None)
    assert [s.completion for b in collect(backend, problems, 2, settings) for s in b] == base


@pytest.mark.slow
def test_backend_from_the_adapter_alone_finds_its_base(trained_adapter, tiny_model,
                                                      problems) -> None:
    _, out = trained_adapter
    b = make_backend(TransformersConfig(adapter=str(out / FINAL_DIR), batch_size=8))
    try:
        assert b.model == str(tiny_model) and b.adapter == str(out / FINAL_DIR)
        batches = collect(b, problems[:1], 2, SamplingSettings(temperature=0, max_new_tokens=8))
        # Greedy: both samples of a prompt are the same.
        assert len(batches[0]) == 2 and batches[0].samples[0].completion == \
            batches[0].samples[1].completion
    finally:
        b.close()


def test_stop_strings_end_the_completion_before_the_stop(backend, problems) -> None:
    assert truncate_at_stop("abc```x", ["```", "c"]) == "ab"
    assert truncate_at_stop("abc", ["z"]) == "abc"
    settings = SamplingSettings(max_new_tokens=40, seed=3)
    free = [s.completion for b in collect(backend, problems, 2, settings) for s in b]
    stop = next(ch for ch in "etaoinsr" if sum(ch in c for c in free) >= 3)
    stopped = [s for b in collect(backend, problems, 2, SamplingSettings(
        max_new_tokens=40, seed=3, stop=[stop])) for s in b]
    assert all(stop not in s.completion for s in stopped)
    assert sum(s.completion_tokens for s in stopped) < sum(len(c) for c in free)


def test_bad_inputs_are_halo_errors(backend, problems, tmp_path) -> None:
    with pytest.raises(HaloError, match="samples per prompt"):
        collect(backend, problems, 0, SamplingSettings())
    with pytest.raises(HaloError, match="not a LoRA adapter folder"):
        backend.load_adapter(str(tmp_path))
    with pytest.raises(HaloError, match="cannot load tokenizer 'nobody/nothing'"):
        make_backend(TransformersConfig(model="nobody/nothing"))

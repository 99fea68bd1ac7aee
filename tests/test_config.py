"""pipeline.toml decoding: the examples load, and every kind of mistake names its key."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from halo_forge.config import (
    EXAMPLES_DIR,
    changed_keys,
    digest,
    flatten,
    load_config,
    parse_config,
    replace_key,
)
from halo_forge.errors import HaloError

MINIMAL = '[model]\ntiny = true\n'


def test_examples_load_and_default_is_cpu_tiny():
    cpu, _ = load_config(EXAMPLES_DIR / "cpu-tiny.toml")
    default, text = load_config(None)
    assert default == cpu
    assert "[raft]" in text
    assert cpu.model.tiny and type(cpu.generation.engine).__name__ == "TransformersConfig"
    gpu, _ = load_config(EXAMPLES_DIR / "qwen7b-gpu.toml")
    assert gpu.model.name == "Qwen/Qwen2.5-Coder-7B-Instruct"
    assert type(gpu.generation.engine).__name__ == "VLLMConfig"
    assert gpu.data.dataset == "codeforces_cpp"


def test_values_in_the_file_are_the_values_used():
    c = parse_config(MINIMAL + "[raft]\ncycles = 7\nkeep_top_percent = 0.25\n"
                     "[generation.engine]\nbackend = 'vllm'\ntensor_parallel_size = 2\n")
    assert c.raft.cycles == 7 and c.raft.keep_top_percent == 0.25
    assert c.generation.engine.tensor_parallel_size == 2


def test_unknown_key_names_key_section_and_suggestion():
    with pytest.raises(HaloError) as err:
        parse_config(MINIMAL + "[raft]\nkeep_top_percnt = 0.5\n")
    msg = str(err.value)
    assert "unknown key `raft.keep_top_percnt`" in msg
    assert "did you mean keep_top_percent?" in msg


def test_unknown_key_in_nested_and_tagged_tables():
    with pytest.raises(HaloError, match=r"unknown key `verifier\.run_limits\.cpu_secs`"):
        parse_config(MINIMAL + "[verifier.run_limits]\ncpu_secs = 1\n")
    with pytest.raises(HaloError, match=r"generation\.engine\.batchsize.*did you mean batch_size"):
        parse_config(MINIMAL + "[generation.engine]\nbackend = 'transformers'\nbatchsize = 3\n")


def test_unknown_section():
    with pytest.raises(HaloError, match=r"unknown section or key `rafts`.*did you mean raft"):
        parse_config(MINIMAL + "[rafts]\ncycles = 1\n")


def test_wrong_type_names_key():
    with pytest.raises(HaloError, match=r"`raft\.cycles`: expected `int`, got `str`"):
        parse_config(MINIMAL + "[raft]\ncycles = 'three'\n")


@pytest.mark.parametrize("body, key", [
    ("[raft]\nkeep_top_percent = 1.5\n", "raft.keep_top_percent"),
    ("[raft]\nkeep_top_percent = 0\n", "raft.keep_top_percent"),
    ("[raft]\nreward_threshold = -0.1\n", "raft.reward_threshold"),
    ("[raft]\nsamples_per_prompt = 0\n", "raft.samples_per_prompt"),
    ("[sft]\nlearning_rate = 0\n", "sft.learning_rate"),
    ("[data]\ntest_fraction = 1.0\n", "data.test_fraction"),
    ("[benchmark]\nsamples = 2\nks = [1, 5]\n", "benchmark.ks"),
    ("[generation]\ntop_p = 0\n", "generation.top_p"),
])
def test_impossible_values_name_the_key(body, key):
    with pytest.raises(HaloError) as err:
        parse_config(MINIMAL + body)
    assert key in str(err.value)


def test_model_needs_a_name_or_tiny():
    with pytest.raises(HaloError, match="model.name"):
        parse_config("[model]\n")
    with pytest.raises(HaloError, match="missing `model`"):
        parse_config("[raft]\ncycles = 1\n")


def test_bad_toml_and_missing_file(tmp_path: Path):
    with pytest.raises(HaloError, match="not valid TOML"):
        parse_config("[model\n")
    with pytest.raises(HaloError, match="cannot read"):
        load_config(tmp_path / "nope.toml")


def test_override_is_validated():
    c = parse_config(MINIMAL)
    assert replace_key(c, "raft.cycles", 9).raft.cycles == 9
    with pytest.raises(HaloError, match="raft.cycles"):
        replace_key(c, "raft.cycles", -1)
    with pytest.raises(HaloError, match="no config key"):
        replace_key(c, "raft.cycels", 1)


def test_stage_values_ignore_neutral_keys_and_name_changes():
    a = parse_config(MINIMAL)
    b = replace_key(replace_key(a, "raft.cycles", 10), "verifier.concurrency", 3)
    sections = ("model", "data", "sft", "raft", "generation", "verifier")
    assert digest(flatten(a, sections)) == digest(flatten(b, sections))
    c = replace_key(a, "generation.temperature", 0.3)
    assert changed_keys(flatten(a, sections), flatten(c, sections)) == ["generation.temperature"]
    # The finished stage's values come back from its JSON state file: only the real change
    # may be named (tuples in the live config must not read as changed lists).
    saved = msgspec.json.decode(msgspec.json.encode(flatten(a, sections)))
    assert changed_keys(saved, flatten(c, sections)) == ["generation.temperature"]


def test_openai_engine_takes_its_model_from_the_model_section():
    c = parse_config(MINIMAL + '\n[generation.engine]\nbackend = "openai"\n'
                     'base_url = "http://127.0.0.1:9/v1"\n')
    assert type(c.generation.engine).__name__ == "OpenAIConfig" and c.generation.engine.model == ""
    from halo_forge.generate import make_backend

    with pytest.raises(HaloError, match="needs a model"):
        make_backend(c.generation.engine)


def test_cli_reports_config_errors(tmp_path: Path, capsys):
    from halo_forge.cli import main

    bad = tmp_path / "p.toml"
    bad.write_text(MINIMAL + "[raft]\nkeep_top_percnt = 0.5\n")
    assert main(["run", str(bad)]) == 2
    assert "unknown key `raft.keep_top_percnt`" in capsys.readouterr().err


def test_keys_added_later_do_not_refuse_an_older_runs_resume():
    # A stage state written before sft.max_grad_norm and the limits' disk_mb existed.
    sections = ("sft", "verifier")
    now = flatten(parse_config(MINIMAL), sections)
    old = {k: v for k, v in now.items()
           if k not in ("sft.max_grad_norm", "verifier.run_limits.disk_mb")}
    assert changed_keys(old, now) == [] and digest(old) == digest(now)
    # Set to anything but the default, the new key is a change like any other.
    clipped = flatten(replace_key(parse_config(MINIMAL), "sft.max_grad_norm", 0.5), sections)
    assert changed_keys(old, clipped) == ["sft.max_grad_norm"]


def test_verifier_limits_are_the_sandboxes_own():
    from halo_forge.sandbox import Limits

    c = parse_config(MINIMAL + "[verifier.run_limits]\ndisk_mb = 64\n")
    assert isinstance(c.verifier.run_limits, Limits) and c.verifier.run_limits.disk_mb == 64
    with pytest.raises(HaloError, match=r"`verifier\.compile_limits`: Limits: cpu_s"):
        parse_config(MINIMAL + "[verifier.compile_limits]\ncpu_s = 0\n")


def test_generation_is_checked_as_the_sampler_checks_it():
    with pytest.raises(HaloError, match=r"generation\.stop strings must not be empty"):
        parse_config(MINIMAL + '[generation]\nstop = [""]\n')
    c = parse_config(MINIMAL + '[generation]\nstop = ["```"]\n')
    assert c.generation.sampling(seed=3).stop == ["```"]

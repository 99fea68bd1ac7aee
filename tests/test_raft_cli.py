"""`halo-forge raft train`: real cycles on the tiny model, resume, one-line errors, flags vs
--config; and `Verifier.sandbox`, which the pipeline hands to the benchmark."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import anyio
import pytest

from halo_forge.cli import build_parser, main
from halo_forge.cli.raft import build_config, resolve_checkpoint
from halo_forge.errors import HaloError
from halo_forge.model_loading import AdapterMeta, read_adapter_meta, write_adapter_meta
from halo_forge.records import Sample, Verdict
from tests.util import shard_ids


@pytest.fixture(scope="module")
def all_prompts(tmp_path_factory) -> Path:
    """Every built-in problem, written by `halo-forge data prepare --prompts`."""
    path = tmp_path_factory.mktemp("prompts") / "all.jsonl"
    assert main(["data", "prepare", "--dataset", "builtin", "--split", "all",
                 "--prompts", str(path)]) == 0
    return path


@pytest.fixture(scope="module")
def py_prompts(all_prompts: Path) -> Path:
    """Three Python problems: quick to verify."""
    lines = [x for x in all_prompts.read_text().splitlines()
             if json.loads(x)["language"] == "python"][:3]
    assert len(lines) == 3
    path = all_prompts.with_name("py.jsonl")
    path.write_text("\n".join(lines) + "\n")
    return path


def _args(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(["raft", "train", *argv])


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [x for x in err if x.startswith("halo-forge: error: ")]
    assert len(errors) == 1, err
    return errors[0]


@pytest.mark.slow
def test_raft_train_runs_cycles_resumes_and_names_a_changed_flag(
        tiny_model: Path, py_prompts: Path, tmp_path: Path, monkeypatch, capsys):
    from safetensors.torch import load_file

    out = tmp_path / "run"
    argv = ["raft", "train", "--checkpoint", str(tiny_model), "--prompts", str(py_prompts),
            "--output", str(out), "--verifier", "python", "--samples-per-prompt", "2",
            # Threshold 0 keeps even the untrained model's samples, so every cycle trains.
            "--reward-threshold", "0", "--keep-top-percent", "1.0", "--max-new-tokens", "16",
            "--max-steps", "1", "--lr", "1e-3", "--concurrency", "2", "--progress", "plain"]

    assert main([*argv, "--cycles", "1"]) == 0
    cycle1 = out / "raft" / "cycle_1"
    samples = shard_ids(cycle1 / "samples.shard", Sample)
    assert len(samples) == len(set(samples)) == 3 * 2
    assert sorted(shard_ids(cycle1 / "verdicts.shard", Verdict)) == sorted(samples)
    assert (cycle1 / "kept.shard").is_file()
    final1 = out / "cycle_1_final"
    meta = read_adapter_meta(final1)
    assert meta.base_model == str(tiny_model.resolve()) and meta.parent_adapter == ""
    # The LoRA B matrices start at zero; one step on the kept samples moved them.
    weights = load_file(final1 / "adapter_model.safetensors")
    assert any(float(w.abs().sum()) > 0 for k, w in weights.items() if "lora_B" in k)
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    cycle1_bytes = (cycle1 / "samples.shard").read_bytes()

    # One more cycle: cycle 1 is not redone, cycle 2 trains on from cycle 1's adapter.
    assert main([*argv, "--cycles", "2"]) == 0
    assert (cycle1 / "samples.shard").read_bytes() == cycle1_bytes
    assert len(shard_ids(out / "raft" / "cycle_2" / "verdicts.shard", Verdict)) == 3 * 2
    assert read_adapter_meta(out / "cycle_2_final").parent_adapter == str(final1)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["cycle"] for r in rows] == [1, 2]

    # The same command again has nothing to do: it must not even load a model.
    from halo_forge import pipeline

    def no_backend(self, model, adapter):
        raise AssertionError("a finished run loaded a generation backend")

    monkeypatch.setattr(pipeline.Pipeline, "_backend_for", no_backend)
    state = {p.name: p.read_bytes() for p in (out / "state").iterdir()}
    capsys.readouterr()
    assert main([*argv, "--cycles", "2"]) == 0
    assert {p.name: p.read_bytes() for p in (out / "state").iterdir()} == state
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2

    # A different value for a finished cycle is refused, naming the key.
    assert main([*argv, "--cycles", "2", "--reward-threshold", "0.5"]) == 2
    line = _one_line_error(capsys)
    assert "raft cycle 1 finished with a different config: raft.reward_threshold" in line


@pytest.mark.parametrize("extra, expected", [
    (["--reward-treshold", "0.5"], "did you mean '--reward-threshold'"),
    (["--keep-top-percent", "1.5"], "--keep-top-percent (raft.keep_top_percent) must be in (0, 1]"),
    (["--samples-per-prompt", "0"], "--samples-per-prompt (raft.samples_per_prompt) must be >= 1"),
    (["--samples-per-prompt", "2", "--max-per-prompt", "3"],
     "--max-per-prompt (raft.max_per_prompt) must be <= --samples-per-prompt"),
    (["--cycles", "two"], "argument --cycles: invalid int value: 'two'"),
    (["--verifier", "gcc"], "holds python, rust problems but --verifier gcc runs c, cpp"),
    (["--verifier", "go"], "argument --verifier: invalid choice: 'go'"),
])
def test_bad_flags_are_one_line_errors(extra, expected, all_prompts, tiny_model, tmp_path,
                                       capsys):
    argv = ["raft", "train", "--checkpoint", str(tiny_model), "--prompts", str(all_prompts),
            "--output", str(tmp_path / "run"), *extra]
    assert main(argv) == 2
    assert expected in _one_line_error(capsys)
    assert not (tmp_path / "run").exists()  # nothing started


def test_bad_inputs_are_one_line_errors(tiny_model, all_prompts, tmp_path, capsys):
    ok = ["--checkpoint", str(tiny_model), "--prompts", str(all_prompts),
          "--output", str(tmp_path / "run")]
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text('{"id": "x"}\n')
    cases = [
        ([*ok[2:]], "pass --checkpoint DIR"),
        ([*ok[:4]], "pass --output"),
        ([*ok[:2], "--prompts", str(tmp_path / "nope.jsonl"), *ok[4:]], "no such file"),
        (["--checkpoint", str(tmp_path / "nope"), *ok[2:]], "no such folder"),
        (["--checkpoint", str(tmp_path), *ok[2:]], "neither a LoRA adapter"),
        ([*ok[:2], "--prompts", str(garbage), *ok[4:]], "garbage.jsonl:1: not a problem"),
    ]
    for extra, expected in cases:
        assert main(["raft", "train", *extra]) == 2, extra
        assert expected in _one_line_error(capsys), extra
    assert not (tmp_path / "run").exists()


def _fake_adapter(folder: Path, base: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    write_adapter_meta(folder, AdapterMeta(base_model=base))
    return folder


def test_checkpoint_is_an_adapter_a_run_folder_or_a_base_model(tmp_path, monkeypatch):
    adapter = _fake_adapter(tmp_path / "sft" / "final_model", "some/base")
    assert resolve_checkpoint(str(adapter), None) == ("some/base", str(adapter.resolve()))
    # An `sft train` run folder: its final_model.
    assert resolve_checkpoint(str(tmp_path / "sft"), None) == ("some/base", str(adapter.resolve()))
    # --model overrides the base the adapter names.
    assert resolve_checkpoint(str(adapter), "/models/other") == ("/models/other",
                                                                 str(adapter.resolve()))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    assert resolve_checkpoint(str(model), None) == (str(model.resolve()), "")
    with pytest.raises(HaloError, match="is a base model, so --model"):
        resolve_checkpoint(str(model), "/models/other")
    assert resolve_checkpoint(None, "Qwen/Qwen2.5-Coder-0.5B") == ("Qwen/Qwen2.5-Coder-0.5B", "")
    monkeypatch.chdir(tmp_path)
    # A hub id is taken as one; a missing path under an existing folder is a typo.
    assert resolve_checkpoint("Qwen/Qwen2.5-Coder-7B", None) == ("Qwen/Qwen2.5-Coder-7B", "")
    with pytest.raises(HaloError, match="sft/final_modle: no such folder"):
        resolve_checkpoint("sft/final_modle", None)


def test_config_file_supplies_what_flags_do_not_give(tmp_path, py_prompts):
    adapter = _fake_adapter(tmp_path / "adapter", "/models/base")
    cfg = tmp_path / "p.toml"
    cfg.write_text(f"""
[model]
tiny = true
[data]
prompts = "{py_prompts}"
[sft]
enabled = true
max_steps = 5
[raft]
cycles = 4
samples_per_prompt = 6
lr_decay = 0.5
[generation]
temperature = 0.3
[generation.engine]
backend = "transformers"
batch_size = 3
[verifier]
verifier = "python"
[benchmark]
enabled = true
[output]
dir = "{tmp_path / 'from-file'}"
""")
    config, text = build_config(_args(["--config", str(cfg), "--checkpoint", str(adapter),
                                       "--samples-per-prompt", "2", "--temperature", "0.9",
                                       "--backend", "transformers"]))
    assert text == cfg.read_text()
    assert config.model.name == "/models/base" and not config.model.tiny
    assert config.sft.adapter == str(adapter.resolve()) and not config.sft.enabled
    assert config.sft.max_steps == 5
    assert (config.raft.cycles, config.raft.samples_per_prompt, config.raft.lr_decay) == (4, 2, 0.5)
    assert config.generation.temperature == 0.9
    assert config.generation.engine.batch_size == 3  # same backend: the file's keys stay
    assert config.verifier.verifier == "python"
    assert not config.benchmark.enabled  # only with --benchmark
    assert config.output.dir == str(tmp_path / "from-file")
    assert config.data.prompts == str(py_prompts)

    config, _ = build_config(_args(["--config", str(cfg), "--checkpoint", str(adapter),
                                    "--backend", "vllm", "--benchmark",
                                    "--output", str(tmp_path / "o")]))
    assert type(config.generation.engine).__name__ == "VLLMConfig"
    assert config.benchmark.enabled and config.output.dir == str(tmp_path / "o")

    # Without --config the defaults apply, with the flags on top.
    config, text = build_config(_args(["--checkpoint", str(adapter), "--prompts", str(py_prompts),
                                       "--output", str(tmp_path / "o"), "--cycles", "5"]))
    assert text == "" and config.raft.cycles == 5 and config.raft.samples_per_prompt == 8
    assert config.data.prompts == str(py_prompts.resolve())


def test_verifier_sandbox_is_started_shared_and_closed():
    from halo_forge.verify.config import VerifierConfig
    from halo_forge.verify.runner import Verifier
    from halo_forge.verify.types import VerifySample

    injected = object()
    assert Verifier(VerifierConfig(verifier="python"), sandbox=injected).sandbox is injected

    async def go() -> str:
        verifier = Verifier(VerifierConfig(verifier="python", cache=False))
        async with verifier:
            sandbox = verifier.sandbox
            assert verifier.sandbox is sandbox  # one pool, not one per caller
            verdict = await verifier.verify(VerifySample(id="a", language="python",
                                                         code="print(1)\n"))
        with pytest.raises(RuntimeError, match="after the verifier was closed"):
            verifier.sandbox  # noqa: B018 - a closed verifier must not start a new pool
        return verdict.status

    assert anyio.run(go) == "ran"  # no tests: ran (#14)


def test_every_raft_key_is_a_flag_and_its_help_shows_the_pipeline_default(tmp_path, py_prompts,
                                                                         capsys):
    import msgspec

    from halo_forge.config import RaftSection

    adapter = _fake_adapter(tmp_path / "adapter", "/models/base")
    base = ["--checkpoint", str(adapter), "--prompts", str(py_prompts), "--output",
            str(tmp_path / "run")]
    defaults = RaftSection()
    with pytest.raises(SystemExit):
        main(["raft", "train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    for field in msgspec.structs.fields(RaftSection):
        default = getattr(defaults, field.name)
        flag = "--" + field.name.replace("_", "-")
        if isinstance(default, bool):
            argv, value = [("--no-" + flag[2:]) if default else flag], not default
        else:
            # A value the section accepts that is not its default (samples_per_prompt 9 is
            # >= max_per_prompt, 0.5 -> 0.25 stays inside every fraction's range).
            value = default + 1 if isinstance(default, int) else default / 2
            argv = [flag, str(value)]
            assert f"{flag} " in help_text and f"(default: {default})" in help_text
        config, _ = build_config(_args([*base, *argv]))
        assert getattr(config.raft, field.name) == value, field.name
        others = {f.name for f in msgspec.structs.fields(RaftSection)} - {field.name}
        assert all(getattr(config.raft, n) == getattr(defaults, n) for n in others), field.name

"""`halo-forge sft train` end to end on the tiny model, and its one-line errors."""

from __future__ import annotations

import json

import msgspec
import pytest

from halo_forge.cli import main
from halo_forge.model_loading import read_adapter_meta


@pytest.mark.slow
def test_sft_train_writes_the_final_adapter(tiny_model, sft_examples, tmp_path, capsys) -> None:
    from halo_forge.data.chat import apply_chat_template

    data = tmp_path / "sft.jsonl"  # the seed format: text already in the chat template
    data.write_text("".join(json.dumps({"text": apply_chat_template(e.messages)}) + "\n"
                            for e in sft_examples[:16]))
    out = tmp_path / "run"
    argv = ["sft", "train", "--data", str(data), "--output", str(out), "--model",
            str(tiny_model), "--max-steps", "6", "--batch-size", "4", "--grad-accum", "1",
            "--lora-rank", "4", "--lr", "1e-3", "--eval-fraction", "0.2", "--no-progress"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "trained 6 steps on 13 examples" in err and "eval loss" in err
    meta = read_adapter_meta(out / "final_model")
    assert meta.base_model == str(tiny_model) and meta.lora_rank == 4
    assert main(argv) == 0  # the same command again: resumes, trains no further step
    assert "continuing the run" in capsys.readouterr().err
    assert main(argv + ["--resume"]) == 0  # the old flag is still accepted


def _recording_train(monkeypatch, tmp_path):
    """train() replaced by a recorder of its `resume` argument (no model is loaded)."""
    import halo_forge.train as train_module

    calls: list[bool] = []

    def fake(config, *, data, output_dir, resume, log):
        calls.append(resume)
        return train_module.TrainResult(adapter_dir=str(tmp_path / "a"), base_model="m",
                                        global_step=1, train_examples=1, eval_examples=0,
                                        skipped_examples=0)

    monkeypatch.setattr(train_module, "train", fake)
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"text": "hi"}) + "\n")
    return calls, ["sft", "train", "--data", str(data), "--output", str(tmp_path / "run"),
                   "--model", "m"]


def test_rerunning_an_interrupted_sft_train_resumes_without_the_flag(monkeypatch, tmp_path,
                                                                     capsys) -> None:
    calls, argv = _recording_train(monkeypatch, tmp_path)
    assert main(argv) == 0 and calls == [False]  # a fresh folder starts from the beginning
    (tmp_path / "run" / "checkpoint-2").mkdir(parents=True)  # what a killed run leaves
    assert main(argv) == 0 and calls[-1] is True
    assert "continuing the run" in capsys.readouterr().err
    assert main(argv + ["--resume"]) == 0 and calls[-1] is True


def test_a_finished_run_without_checkpoints_is_not_silently_retrained(monkeypatch, tmp_path,
                                                                      capsys) -> None:
    calls, argv = _recording_train(monkeypatch, tmp_path)
    (tmp_path / "run" / "final_model").mkdir(parents=True)
    assert main(argv) == 2 and calls == []
    err = capsys.readouterr().err
    assert "finished run" in err and "new --output" in err and len(err.strip().splitlines()) == 1


def test_bad_input_is_one_line_not_a_traceback(tiny_model, tmp_path, capsys) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"text": "hi"}) + "\n")
    cases = [
        (["--model", "no-such-org/no-such-model"], "cannot load tokenizer"),
        (["--model", str(tiny_model), "--lora-rank", "0"], "lora_rank must be at least 1"),
        (["--model", str(tiny_model), "--data", str(tmp_path / "none.jsonl")], "no such file"),
    ]
    for extra, message in cases:
        argv = ["sft", "train", "--data", str(data), "--output", str(tmp_path / "o")] + extra
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("halo-forge: error:") and message in err
        assert "Traceback" not in err and len(err.splitlines()) == 1


def _other_value(field):
    """A valid value of an SFT setting other than its default."""
    import typing

    from halo_forge.cli.flags import _unwrap

    t, _ = _unwrap(field.type)
    default = field.default if field.default is not msgspec.NODEFAULT else field.default_factory()
    if t is bool:
        return not default
    if typing.get_origin(t) is typing.Literal:
        return next(c for c in typing.get_args(t) if c != default)
    if typing.get_origin(t) is list:
        return ["q_proj", "v_proj"]
    if t is int:
        return default + 1
    return default / 2 if default else 0.5  # floats: ratios stay in range


def _as_flag(name, value) -> list[str]:
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return [flag if value else "--no-" + flag[2:]]
    return [flag, ",".join(value) if isinstance(value, list) else str(value)]


def _toml(name, value) -> str:
    return f"[model]\ntiny = true\n[sft]\n{name} = {json.dumps(value)}\n"  # JSON values are TOML


def test_every_sft_setting_is_a_flag_a_pipeline_key_and_a_library_field() -> None:
    from halo_forge.cli import build_parser
    from halo_forge.cli.sft import build_sft_config
    from halo_forge.config import parse_config
    from halo_forge.sft_settings import SftSettings

    fields = msgspec.structs.fields(SftSettings)
    assert len(fields) >= 20
    for field in fields:
        value = _other_value(field)
        args = build_parser().parse_args(["sft", "train", "--data", "d", "--output", "o",
                                          "--model", "m", *_as_flag(field.name, value)])
        config = build_sft_config(args)
        assert getattr(config, field.name) == value, field.name
        assert getattr(parse_config(_toml(field.name, value)).sft, field.name) == value


def test_sft_settings_are_checked_the_same_everywhere() -> None:
    from halo_forge.cli import build_parser
    from halo_forge.cli.sft import build_sft_config
    from halo_forge.config import parse_config
    from halo_forge.errors import HaloError
    from halo_forge.train import SFTConfig

    for name, bad in [("warmup_ratio", 1.0), ("max_grad_norm", -1.0), ("lora_rank", 0)]:
        with pytest.raises(HaloError, match=f"sft train: {name} must"):
            build_sft_config(build_parser().parse_args(
                ["sft", "train", "--data", "d", "--output", "o", *_as_flag(name, bad)]))
        with pytest.raises(HaloError, match=f"sft.{name} must"):
            parse_config(_toml(name, bad))
        with pytest.raises(ValueError, match=f"^{name} must"):
            SFTConfig(**{name: bad})

"""`halo-forge sft train` end to end on the tiny model, and its one-line errors."""

from __future__ import annotations

import json

from halo_forge.cli import main
from halo_forge.train_models import read_adapter_meta


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
    assert main(argv) == 2  # a finished run is not overwritten without --resume
    assert "--resume" in capsys.readouterr().err
    assert main(argv + ["--resume"]) == 0


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

"""[output] trackers: the cycle metrics to TensorBoard / wandb / trackio through one adapter
(trackers.py), the trainer's steps through transformers' report_to, and a missing optional
package named up front."""

from __future__ import annotations

import importlib.machinery
import json
import logging
import struct
import sys
import types
from pathlib import Path

import msgspec
import pytest

from halo_forge import trackers
from halo_forge.config import OutputSection, PipelineConfig
from halo_forge.errors import HaloError
from halo_forge.metrics import CycleMetrics
from halo_forge.trackers import CycleTrackers, check_trackers, scalars

pytest.importorskip("tensorboard")  # in [dev]: these tests read the event files back


def _events(directory: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(directory))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)]
            for tag in acc.Tags()["scalars"]}


def _rows() -> list[CycleMetrics]:
    return [CycleMetrics(cycle=1, samples=8, pass_rate=0.25, compile_rate=0.5, mean_reward=0.4,
                         kept=2, statuses={"passed": 2, "wrong_answer": 6}, train_loss=1.5),
            CycleMetrics(cycle=2, samples=8, pass_rate=0.625, compile_rate=0.875,
                         mean_reward=0.7, kept=5, statuses={"passed": 5, "timeout": 3},
                         resumed=True)]


class _FakeRunModule(types.ModuleType):
    """wandb's and trackio's module-level init/log/finish, recorded."""

    def __init__(self, name: str, *, fail_log: bool = False) -> None:
        super().__init__(name)
        self.__spec__ = importlib.machinery.ModuleSpec(name, None)
        self.calls: list[tuple] = []
        self.fail_log = fail_log

    def init(self, **kwargs):
        self.calls.append(("init", kwargs))

    def log(self, values, *, step):
        if self.fail_log:
            raise ConnectionError("no network")
        self.calls.append(("log", dict(values), step))

    def finish(self):
        self.calls.append(("finish",))


def test_tensorboard_event_files_hold_each_cycles_metrics(tmp_path: Path) -> None:
    t = CycleTrackers(tmp_path, ["tensorboard"])
    for row in _rows():
        t.log(row)
    t.close()
    events = _events(tmp_path / "tensorboard")
    assert events["raft/pass_rate"] == [(1, 0.25), (2, 0.625)]
    assert events["raft/kept"] == [(1, 2.0), (2, 5.0)]
    assert events["raft/status/timeout"] == [(2, 3.0)]
    assert events["raft/train_loss"] == [(1, 1.5)]  # None (cycle 2) is no point, not a zero
    assert "raft/resumed" not in events and "raft/cycle" not in events


def test_the_old_tensorboard_switch_still_writes_and_warns_without_the_package(
        tmp_path: Path, monkeypatch, caplog) -> None:
    t = CycleTrackers(tmp_path / "a", [], tensorboard=True)
    t.log(_rows()[0])
    t.close()
    assert _events(tmp_path / "a" / "tensorboard")["raft/pass_rate"] == [(1, 0.25)]

    monkeypatch.setattr(trackers, "installed", lambda name: name != "tensorboard")
    with caplog.at_level(logging.WARNING):
        t = CycleTrackers(tmp_path / "b", [], tensorboard=True)
    t.log(_rows()[0])
    assert t.names == [] and "pip install tensorboard" in caplog.text
    assert not (tmp_path / "b").exists()
    # Asked for by name, the same missing package is an error, not a warning.
    with pytest.raises(HaloError, match="output.trackers names tensorboard but it is not "
                                        "installed: pip install tensorboard"):
        CycleTrackers(tmp_path / "c", ["tensorboard"])


@pytest.mark.parametrize("name", ["wandb", "trackio"])
def test_wandb_and_trackio_get_a_run_per_process_and_every_cycle(tmp_path, monkeypatch,
                                                                 name) -> None:
    # Neither is installed in the test venv (their dependency trees are large): a module with
    # their documented init/log/finish stands in, so this checks the adapter's side only.
    fake = _FakeRunModule(name)
    monkeypatch.setitem(sys.modules, name, fake)
    monkeypatch.setenv(f"{name.upper()}_PROJECT", "my-project")
    t = CycleTrackers(tmp_path, [name], run_name="run7", config={"raft": {"cycles": 2}})
    rows = _rows()
    for row in rows:
        t.log(row)
    t.close()
    init, log1, log2, finish = fake.calls
    assert init[0] == "init" and init[1]["project"] == "my-project"
    assert init[1]["name"] == "run7" and init[1]["config"] == {"raft": {"cycles": 2}}
    assert ("dir" in init[1]) == (name == "wandb")
    assert log1 == ("log", scalars(rows[0]), 1) and log2 == ("log", scalars(rows[1]), 2)
    assert log1[1]["raft/pass_rate"] == 0.25 and finish == ("finish",)


def _wandb_records(run_file: Path) -> list:
    """The protobuf Records of a wandb run file (an offline run's run-ID.wandb): a 7-byte file
    header, then 32 KiB blocks of chunks (crc32c u32, length u16, kind u8: 1 whole, 2 first,
    3 middle, 4 last); a block's tail under 7 bytes is padding. wandb 0.31 reads it only in Go."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block, pos, chunk, records = run_file.read_bytes(), 32768, 7, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if n == 0 and kind == 0:  # zero padding up to the block's end
            pos += left
            continue
        chunk += data[pos + 7:pos + 7 + n]
        pos += 7 + n
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


def test_wandb_offline_run_holds_every_cycle(tmp_path, monkeypatch) -> None:
    wandb = pytest.importorskip("wandb")  # in [dev]; [trackers] for users
    for name, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true",
                        "WANDB_CONFIG_DIR": str(tmp_path / "cfg"),
                        "WANDB_CACHE_DIR": str(tmp_path / "cache"),
                        "WANDB_DATA_DIR": str(tmp_path / "data")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    t = CycleTrackers(tmp_path, ["wandb"], run_name="run7", config={"raft": {"cycles": 2}})
    try:
        for row in _rows():
            t.log(row)
    finally:
        t.close()
        wandb.teardown()
    (run_file,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
    records = _wandb_records(run_file)
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.display_name == "run7" and run.project == "halo-forge"
    config = {i.key: json.loads(i.value_json) for i in run.config.update}
    assert config["raft"] == {"cycles": 2}
    def key(item) -> str:  # wandb writes a/b either whole or split
        return item.key or "/".join(item.nested_key)

    history = {r.history.step.num: {key(i): float(i.value_json) for i in r.history.item
                                    if key(i).startswith("raft/")}
               for r in records if r.WhichOneof("record_type") == "history"}
    assert history == {row.cycle: pytest.approx(scalars(row)) for row in _rows()}


def test_a_failing_tracker_is_dropped_and_the_others_keep_logging(tmp_path, monkeypatch,
                                                                  caplog) -> None:
    fake = _FakeRunModule("wandb", fail_log=True)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    t = CycleTrackers(tmp_path, ["tensorboard", "wandb"])
    with caplog.at_level(logging.WARNING):
        for row in _rows():
            t.log(row)
    t.close()
    assert "tracker wandb failed (no network)" in caplog.text
    assert caplog.text.count("tracker wandb failed") == 1
    assert ("finish",) in fake.calls  # closed when dropped
    assert _events(tmp_path / "tensorboard")["raft/pass_rate"] == [(1, 0.25), (2, 0.625)]


def test_missing_optional_tracker_is_one_line_up_front(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(trackers, "installed", lambda name: name == "tensorboard")
    with pytest.raises(HaloError) as info:
        check_trackers(["tensorboard", "trackio"])
    assert str(info.value) == ("output.trackers names trackio but it is not installed: "
                               "pip install 'halo-forge[trackers]' (or remove it from "
                               "output.trackers)")
    from halo_forge.pipeline import Pipeline

    config = msgspec.convert({"model": {"tiny": True}, "output": {
        "dir": str(tmp_path / "run"), "trackers": ["wandb"]}}, PipelineConfig)
    with pytest.raises(HaloError, match=r"names wandb .*halo-forge\[trackers\]"):
        Pipeline(config)
    assert not (tmp_path / "run").exists()  # refused before the folder was touched


def test_run_command_refuses_a_missing_tracker_in_one_line(tmp_path, monkeypatch,
                                                           capsys) -> None:
    from halo_forge.cli import main

    monkeypatch.setattr(trackers, "installed", lambda name: False)
    cfg = tmp_path / "p.toml"
    cfg.write_text(f'[model]\ntiny = true\n[output]\ndir = "{tmp_path / "run"}"\n'
                   'trackers = ["wandb"]\n')
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("halo-forge: error:")]
    assert len(errors) == 1 and "pip install 'halo-forge[trackers]'" in errors[0]
    assert "Traceback" not in err


def test_config_trackers() -> None:
    assert OutputSection().trackers == [] and not OutputSection().tensorboard  # none by default
    assert msgspec.convert({"trackers": ["wandb", "tensorboard"]}, OutputSection).trackers == [
        "wandb", "tensorboard"]
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"trackers": ["mlflow"]}, OutputSection)
    with pytest.raises(ValueError, match="names a tracker twice"):
        OutputSection(trackers=["wandb", "wandb"])


def test_training_steps_report_through_transformers(tmp_path, monkeypatch) -> None:
    """The pipeline's trackers reach TrainingArguments.report_to, also through the JSON a
    training child decodes (train_process.Request carries the SFTConfig's fields)."""
    from halo_forge.pipeline import Pipeline
    from halo_forge.train import SFTConfig, _training_args

    fake = _FakeRunModule("trackio")
    monkeypatch.setitem(sys.modules, "trackio", fake)
    config = msgspec.convert({"model": {"tiny": True}, "output": {
        "dir": str(tmp_path / "run"), "trackers": ["trackio"], "tensorboard": True}},
        PipelineConfig)
    sft = Pipeline(config)._sft_config("some-model")
    assert sft.report_to == ["tensorboard", "trackio"]
    in_child = msgspec.convert(msgspec.json.decode(msgspec.json.encode(sft)), SFTConfig)
    assert in_child.report_to == ["tensorboard", "trackio"]

    import torch

    args = _training_args(in_child, tmp_path / "t", has_eval=False, dtype=torch.float32,
                          learning_rate=1e-4)
    assert list(args.report_to) == ["tensorboard", "trackio"]
    assert getattr(args, "project", "halo-forge") == "halo-forge"
    off = _training_args(SFTConfig(model="m"), tmp_path / "u", has_eval=False,
                         dtype=torch.float32, learning_rate=1e-4)
    assert list(off.report_to) == []  # nothing by default
    with pytest.raises(HaloError, match="report_to: unknown tracker 'mlflow'"):
        SFTConfig(model="m", report_to=["mlflow"])


def test_sft_train_refuses_a_missing_tracker_before_loading_anything(tmp_path, monkeypatch,
                                                                     capsys) -> None:
    from halo_forge.cli import main

    monkeypatch.setattr(trackers, "installed", lambda name: name != "wandb")
    data = tmp_path / "sft.jsonl"
    data.write_text('{"text": "hello"}\n')
    assert main(["sft", "train", "--data", str(data), "--output", str(tmp_path / "out"),
                 "--model", str(tmp_path / "no-such-model"), "--report-to", "wandb"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("halo-forge: error: report_to names wandb but it is not installed: "
                           "pip install 'halo-forge[trackers]' (or remove it from report_to)")


@pytest.mark.slow
def test_a_run_with_tensorboard_writes_each_cycles_metrics(tmp_path: Path) -> None:
    """A real run (tests/raft_fake_run.py: real verifier, shards and state, scripted
    generation) with trackers = ["tensorboard"]: its event files hold metrics.jsonl's cycle."""
    from halo_forge.metrics import read_metrics
    from tests.test_pipeline_resume import CONFIG, SPP, _run

    out = tmp_path / "run"
    cfg = tmp_path / "p.toml"
    cfg.write_text(CONFIG.format(spp=SPP, out=out) + 'trackers = ["tensorboard"]\n')
    p = _run(cfg, tmp_path / "gen.log")
    text = p.communicate(timeout=300)[0].decode()
    assert p.returncode == 0, text[-3000:]
    (row,) = read_metrics(out / "metrics.jsonl")
    events = _events(out / "tensorboard")
    expected = scalars(row)
    assert row.samples > 0 and expected["raft/samples"] == row.samples
    assert {tag: values[-1] for tag, values in events.items()} == {
        tag: (1, pytest.approx(value)) for tag, value in expected.items()}


@pytest.mark.slow
def test_training_steps_reach_tensorboard_from_the_training_child(tiny_model, sft_examples,
                                                                  tmp_path) -> None:
    """report_to travels with the SFTConfig to the training child, whose Trainer writes the
    step scalars under the training folder (transformers' TensorBoardCallback: output/runs/)."""
    from halo_forge.cli import main
    from halo_forge.data.chat import apply_chat_template

    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps({"text": apply_chat_template(e.messages)}) + "\n"
                            for e in sft_examples[:8]))
    out = tmp_path / "run"
    assert main(["sft", "train", "--data", str(data), "--output", str(out), "--model",
                 str(tiny_model), "--max-steps", "3", "--batch-size", "2", "--grad-accum", "1",
                 "--lora-rank", "4", "--logging-steps", "1", "--no-progress",
                 "--train-process", "child", "--report-to", "tensorboard"]) == 0
    (logdir,) = {p.parent for p in (out / "runs").rglob("events.out.tfevents.*")}
    events = _events(logdir)
    assert [step for step, _ in events["train/loss"]] == [1, 2, 3]
    assert all(loss > 0 for _, loss in events["train/loss"])

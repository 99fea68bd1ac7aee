"""Training hands the accelerator back before an engine is built or woken (train_process.py).

CPU has no GPU memory to measure, so what is proven here is the mechanism: the child path runs
for real (a RAFT cycle killed inside its training resumes from the last certified checkpoint,
Ctrl-C stops it cleanly, the engine wakes only once the child is gone), and the inline path
drops the trained model before it empties PyTorch's cache.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

import anyio
import pytest

from halo_forge import train_process
from halo_forge.checkpoints import checkpoints, is_complete
from halo_forge.errors import HaloError
from halo_forge.generate.base import Batch, BatchStats, GenerationParams, make_sample
from halo_forge.pipeline import INTERRUPTED, Pipeline
from halo_forge.progress import Progress
from halo_forge.train import SFTConfig
from tests.util import descendants, subprocess_env

# --- which way -------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "cuda", "env", "child"), [
    ("auto", True, {}, True),
    ("auto", False, {}, False),  # CPU: the child would cost an import of torch per run
    ("child", False, {}, True),
    ("inline", True, {}, False),
    # Already one rank of a launcher: a child per rank would be N trainings.
    ("child", True, {"WORLD_SIZE": "4"}, False),
    ("auto", True, {"WORLD_SIZE": "2"}, False),
])
def test_auto_means_a_child_where_cuda_is_in_use_and_never_inside_a_launcher(
        monkeypatch, mode, cuda, env, child):
    monkeypatch.setattr(train_process, "_cuda_in_use", lambda: cuda)
    assert train_process.use_child(mode, env=env) is child


def test_several_gpus_train_as_ranks_under_torchrun_one_gpu_in_the_module_itself(tmp_path):
    request = tmp_path / "r.json"
    one = train_process.child_command(request, ranks=1)
    assert one == [sys.executable, "-m", "halo_forge.train_process", str(request)]
    four = train_process.child_command(request, ranks=4)
    assert four[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc_per_node=4" in four
    assert four[-3:] == ["-m", "halo_forge.train_process", str(request)]


def test_the_setting_is_neutral_for_a_resumed_run():
    """Switching where training runs must not refuse a rerun as a changed config."""
    from halo_forge.config import ModelSection, PipelineConfig, SftSection, flatten

    a = PipelineConfig(model=ModelSection(tiny=True), sft=SftSection(train_process="child"))
    b = PipelineConfig(model=ModelSection(tiny=True), sft=SftSection(train_process="inline"))
    assert flatten(a, ("model", "sft")) == flatten(b, ("model", "sft"))


# --- inline: the model is gone before the cache is emptied ------------------------------------


def test_inline_training_drops_the_model_before_emptying_the_cache(
        tiny_model, sft_examples, tmp_path, monkeypatch):
    import torch
    from transformers import TrainerCallback

    refs: list[weakref.ref] = []

    class Watch(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kwargs):
            refs.append(weakref.ref(model))

    emptied: list[bool] = []  # at each empty_cache: was the trained model already gone?
    monkeypatch.setattr(train_process, "_cuda_in_use", lambda: True)  # fake CUDA
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(refs[0]() is None))
    config = SFTConfig(model=str(tiny_model), max_steps=2, batch_size=2, grad_accum=1,
                       save_steps=2, progress=False, train_process="inline")
    trainer = train_process.Trainer(mode="inline")
    assert not trainer.child
    result = trainer.run(config, data=sft_examples[:8], output_dir=tmp_path / "run",
                         callbacks=[Watch()])
    assert result.global_step == 2
    assert emptied == [True]
    assert refs[0]() is None


# --- the child, in a pipeline -----------------------------------------------------------------


def _training_children() -> list[int]:
    """This process's descendants that are training children."""
    return sorted(pid for pid in descendants(os.getpid()) if _is_trainer(pid))


class Events:
    """One ordered record of what the fake engine and the run's log saw."""

    def __init__(self) -> None:
        self.items: list[tuple[str, object]] = []

    # Progress writes its log lines here.
    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                self.items.append(("log", line))
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def lines(self) -> list[str]:
        return [str(v) for k, v in self.items if k == "log"]


class SleepWakeBackend:
    """A generation backend whose sleep and wake_up record which training children are alive
    (the CPU engine has no sleep mode). Sample 0 of each problem is its reference, so RAFT keeps
    something to train on."""

    name = "fake"
    adapter = ""

    def __init__(self, model: str, events: Events) -> None:
        self.model, self.events = model, events

    async def stream(self, problems, *, samples_per_prompt, params, cycle=0):
        out = []
        for p in problems:
            for i in range(samples_per_prompt):
                code = p.reference if i == 0 else f"print('{p.id} {i}')\n"
                out.append(make_sample(p, cycle=cycle, index=i,
                                       completion=f"```python\n{code}```", prompt_tokens=1,
                                       completion_tokens=10,
                                       params=GenerationParams(model=self.model)))
        yield Batch(out, BatchStats(samples=len(out), completion_tokens=10 * len(out),
                                    wall_s=0.01))

    def load_adapter(self, path):
        self.adapter = path or ""

    def sleep(self):
        self.events.items.append(("sleep", _training_children()))

    def wake_up(self):
        self.events.items.append(("wake", _training_children()))

    def close(self):
        pass


PIPELINE = """
[model]
name = "{model}"
[data]
dataset = "builtin"
languages = ["python"]
test_fraction = 0.0
limit = 4
[sft]
enabled = false
batch_size = 2
grad_accum = 1
save_steps = 2
logging_steps = 1
train_process = "child"
[raft]
cycles = 2
samples_per_prompt = 2
reward_threshold = 1.0
max_steps = 4
learning_rate = 0.001
[verifier]
concurrency = 2
[benchmark]
enabled = false
[output]
dir = "{out}"
progress = "plain"
plot = false
"""


def _pipeline(text: str, events: Events, monkeypatch) -> Pipeline:
    """The run, its engine the fake (held as the pipeline holds a real one, so that the cycle
    sleeps and wakes it)."""
    from halo_forge.config import parse_config

    def backend_for(self: Pipeline, model: str, adapter: str) -> SleepWakeBackend:
        if self._backend is None:
            self._backend = SleepWakeBackend(model, events)
        self._backend.load_adapter(adapter)
        return self._backend

    monkeypatch.setattr(Pipeline, "_backend_for", backend_for)
    return Pipeline(parse_config(text), progress=Progress("plain", stream=events))


@pytest.mark.slow
def test_a_cycle_trained_in_a_child_resumes_after_a_kill_and_the_engine_wakes_after_it(
        tiny_model, tmp_path, monkeypatch):
    out = tmp_path / "run"
    text = PIPELINE.format(model=tiny_model, out=out)
    first = Events()
    # The child (not this process: its faults were read at import) dies while writing its
    # second checkpoint, before certifying it, as a kill -9 or the OOM killer would.
    monkeypatch.setenv("HALO_FAULT", "train.checkpoint.written@2")
    with pytest.raises(HaloError) as failed:
        anyio.run(_pipeline(text, first, monkeypatch).run)
    message = str(failed.value)
    assert "\n" not in message and "SIGKILL" in message and "rerun" in message, message
    train_dir = out / "raft" / "cycle_1" / "train"
    assert [p.name for p in checkpoints(train_dir)] == ["checkpoint-4", "checkpoint-2"]
    assert is_complete(train_dir / "checkpoint-2") and not is_complete(train_dir / "checkpoint-4")
    assert not _training_children()

    monkeypatch.delenv("HALO_FAULT")
    again = Events()
    summary = anyio.run(_pipeline(text, again, monkeypatch).run)
    assert summary.cycles_done == 2
    lines = again.lines()
    # Cycle 1 went on from its last certified checkpoint; the torn one was removed.
    assert any("checkpoint-4: incomplete checkpoint" in line for line in lines), lines
    assert any(line.endswith("resuming from " + str(train_dir / "checkpoint-2"))
               for line in lines), lines
    # The child's own output reached the log: the Trainer's first and last loss lines.
    losses = [line for line in lines if "'loss':" in line]
    assert len(losses) >= 2 + 4, lines  # cycle 1's steps 3-4, cycle 2's steps 1-4
    # Cycle 2: the engine slept, the child trained and was gone, then the engine woke.
    kinds = [k if k != "log" else ("start" if "training in child process" in str(v) else
                                   "exit" if "training child process" in str(v) else "log")
             for k, v in again.items]
    order = [k for k in kinds if k != "log"]
    assert order == ["start", "exit", "sleep", "start", "exit", "wake"], order
    asleep = next(v for k, v in again.items if k == "sleep")
    awake = next(v for k, v in again.items if k == "wake")
    assert asleep == [] and awake == [], (asleep, awake)
    for c in (1, 2):
        assert (out / f"cycle_{c}_final" / "adapter_config.json").is_file()
        leftovers = {p.name for p in (out / "raft" / f"cycle_{c}" / "train").iterdir()}
        assert not leftovers & {train_process.REQUEST, train_process.RESULT,
                                train_process.EXAMPLES}


SFT_ONLY = """
[model]
name = "{model}"
[data]
dataset = "builtin"
languages = ["python"]
test_fraction = 0.0
[sft]
max_steps = 30
batch_size = 2
grad_accum = 1
save_steps = 2
logging_steps = 1
train_process = "child"
[raft]
cycles = 0
[benchmark]
enabled = false
[output]
dir = "{out}"
progress = "plain"
plot = false
"""


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


@pytest.mark.slow
def test_ctrl_c_during_training_in_a_child_stops_cleanly_and_the_rerun_resumes(
        tiny_model, tmp_path):
    out = tmp_path / "run"
    cfg = tmp_path / "p.toml"
    cfg.write_text(SFT_ONLY.format(model=tiny_model, out=out))
    # The child freezes itself just after writing its first checkpoint, so the stop lands
    # while it trains, whatever the machine's speed.
    env = subprocess_env(HALO_FAULT="train.checkpoint.written", HALO_FAULT_SIGNAL="STOP")
    run = subprocess.Popen([sys.executable, "-m", "halo_forge", "run", str(cfg)], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           start_new_session=True)
    try:
        child = None
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and run.poll() is None and child is None:
            child = next((pid for pid in descendants(run.pid) if _is_trainer(pid)
                          and _state(pid) == "T"), None)
            time.sleep(0.1)
        assert child is not None, run.communicate(timeout=30)[0].decode()[-3000:]
        # A terminal's Ctrl-C: SIGINT to the run's process group (the child has its own).
        os.killpg(run.pid, signal.SIGINT)
        time.sleep(1.0)  # the run passes the stop on; the frozen child finds it when it wakes
        os.kill(child, signal.SIGCONT)
        text = run.communicate(timeout=300)[0].decode()
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert run.returncode == 128 + signal.SIGINT, text[-3000:]
    assert text.count(INTERRUPTED) == 1 and "Traceback" not in text, text[-3000:]
    assert f"training child process {child} exited" in text and "killed" not in text
    assert not _state(child)  # gone (reaped), not left training
    saved = checkpoints(out / "sft")
    assert saved and all(is_complete(p) for p in saved)
    stopped_at = int(saved[0].name.split("-")[1])
    assert stopped_at < 30  # it stopped early, at a step, not at the end

    rerun = subprocess.run([sys.executable, "-m", "halo_forge", "run", str(cfg)],
                           env=subprocess_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=600)
    text = rerun.stdout.decode()
    assert rerun.returncode == 0, text[-3000:]
    assert f"resuming from {saved[0]}" in text
    assert (out / "sft" / "final_model" / "adapter_config.json").is_file()


def _is_trainer(pid: int) -> bool:
    try:
        return b"halo_forge.train_process" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.mark.slow
def test_two_ranks_train_as_one_stop_at_the_same_step_and_resume(tiny_model, sft_examples,
                                                                 tmp_path):
    """What several GPUs run (one rank per GPU under torchrun), on CPU with gloo: one DDP
    training, a stop that every rank takes at the same step (a rank stopping alone would leave
    the other waiting in a collective for ever), and a resume from the certified checkpoint."""
    import threading

    from halo_forge.errors import Interrupted
    from halo_forge.raft import Stopper

    config = SFTConfig(model=str(tiny_model), max_steps=12, batch_size=2, grad_accum=1,
                       save_steps=2, logging_steps=1, progress=False, learning_rate=1e-3)
    out = tmp_path / "run"
    stop = Stopper()
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        if sum("'loss':" in x for x in lines) == 3:
            stop.request("SIGINT")

    trainer = train_process.Trainer(mode="child", ranks=2, stop=stop, log=log)
    watchdog = threading.Timer(600, trainer.kill)  # a hang fails the test instead
    watchdog.start()
    try:
        with pytest.raises(Interrupted):
            trainer.run(config, data=sft_examples, output_dir=out)
    finally:
        watchdog.cancel()
    saved = checkpoints(out)
    assert saved and all(is_complete(p) for p in saved), lines
    stopped_at = int(saved[0].name.split("-")[1])
    assert stopped_at < 12
    # One training, not two: rank 0 alone logs, one loss line per step.
    losses = [x for x in lines if "'loss':" in x]
    assert 3 <= len(losses) < 12, lines

    lines.clear()
    result = train_process.Trainer(mode="child", ranks=2, log=lines.append).run(
        config, data=sft_examples, output_dir=out, resume=True)
    assert result.global_step == 12 and result.resumed_from == str(saved[0])
    assert sum("'loss':" in x for x in lines) == 12 - stopped_at, lines
    # Two ranks of 2 examples: each step saw 4 (one rank alone would be half as far).
    import re

    summary = next(x for x in lines if "'train_runtime'" in x)
    epoch = float(re.search(r"'epoch': '?([0-9.]+)", summary).group(1))
    assert epoch == pytest.approx(12 * 2 * 2 / result.train_examples, abs=0.05), summary
    assert (out / "final_model" / "adapter_config.json").is_file()


@pytest.mark.slow
def test_sft_train_in_a_child_writes_its_own_output_and_returns_the_adapter(
        tiny_model, tmp_path, capfd):
    """`sft train --train-process child`: the child writes to the terminal itself (its progress
    bar redraws in place), and the command reports the child's result."""
    import json

    from halo_forge.cli import main

    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"say {i}"},
        {"role": "assistant", "content": f"print({i})"}]}) + "\n" for i in range(8)))
    out = tmp_path / "run"
    assert main(["sft", "train", "--data", str(data), "--output", str(out), "--model",
                 str(tiny_model), "--max-steps", "2", "--batch-size", "2", "--grad-accum", "1",
                 "--train-process", "child", "--no-progress", "--logging-steps", "1"]) == 0
    err = capfd.readouterr()
    text = err.out + err.err
    assert "training in child process" in text and "'loss':" in text, text[-2000:]
    assert "trained 2 steps on 8 examples" in text
    assert (out / "final_model" / "adapter_config.json").is_file()

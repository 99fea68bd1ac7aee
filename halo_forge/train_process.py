"""Training in a child process, so that its exit hands every byte of accelerator memory back.

vLLM's engine runs in other processes and refuses to start or wake up unless
`gpu_memory_utilization` of the card is free. After `trainer.train()` our own process would
still hold the model, the optimizer state and PyTorch's caching allocator, and no amount of
`del` and `empty_cache()` reaches a CUDA context, cuBLAS workspaces or what a library keeps in a
global. A process that exits returns all of it, so on GPUs each training run (SFT, every RAFT
cycle's) is a child:

- one GPU: `python -m halo_forge.train_process REQUEST`; several: the same module under
  torchrun, one rank per GPU (DDP across the GPUs the engine sleeps on);
- the child is in its own session, so a terminal's Ctrl-C reaches only the parent, which
  decides: the first stop is written to the child's stdin and the child stops after its current
  step (every rank at the same step), a second one kills the child's whole process group;
- the child's stdout and stderr (log lines, the Trainer's loss lines, warnings) come back line
  by line to the parent's log; its result (or its error, as one line) comes back as a file;
- the child watches its stdin: end of file means the parent died (kill -9), and it exits
  rather than train on beside the rerun that will resume from the last certified checkpoint.

`train_process = "inline"` trains in this process and then drops every reference and empties
PyTorch's cache (what CPU runs do by default: a child costs an import of torch + transformers).
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec

from halo_forge.errors import HaloError, Interrupted

Mode = Literal["auto", "child", "inline"]
REQUEST = "train_request.json"
RESULT = "train_result.json"
EXAMPLES = "train_examples.shard"
_STARTED = "training in child process"  # the line that names the child's pid


class Request(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    config: Any  # train.SFTConfig's fields (decoded by the child, where train is imported)
    data: str
    output_dir: str
    resume: bool
    learning_rate: float | None = None
    init_adapter: str | None = None


class Outcome(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    status: Literal["done", "interrupted", "error", "oserror", "crashed"]
    result: Any = None  # train.TrainResult's fields when done
    message: str = ""
    errno: int = 0
    filename: str = ""


# --- which way ----------------------------------------------------------------------------


def _cuda_in_use() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a core dependency
        return False
    return torch.cuda.is_available()


def use_child(mode: str, env: Mapping[str, str] | None = None) -> bool:
    """Whether training runs in a child process. A process that is already one rank of a
    launcher (accelerate, torchrun) trains in place: a child per rank would be N trainings."""
    env = os.environ if env is None else env
    if int(env.get("WORLD_SIZE", "1") or "1") > 1:
        return False
    if mode == "auto":
        return _cuda_in_use()
    return mode == "child"


def child_command(request: Path, *, ranks: int) -> list[str]:
    """The child's argv: the module itself, or `ranks` copies of it under torchrun (DDP: the
    launcher `accelerate launch --multi_gpu` runs too; the Trainer does the rest, and with
    gloo the same launch runs on CPU, which is how the suite checks it)."""
    module = ["-m", "halo_forge.train_process", str(request)]
    if ranks <= 1:
        return [sys.executable, *module]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={ranks}", *module]


# --- the parent's side ----------------------------------------------------------------------


def release_memory() -> None:
    """What an inline run can hand back: the objects nothing references any more (the trainer,
    model and optimizer sit in reference cycles) and then the allocator's cached blocks."""
    gc.collect()
    if _cuda_in_use():
        import torch

        torch.cuda.empty_cache()


class Trainer:
    """One training run, inline or in a child; `kill()` (from another thread) ends a child at
    once. `stop` is the run's Stopper (halo_forge.raft): its request ends the training after
    the current step, as Interrupted."""

    def __init__(self, *, mode: str = "auto", stop: Any = None,
                 log: Callable[[str], None] = lambda line: None, ranks: int | None = None,
                 capture: bool = True) -> None:
        self.child = use_child(mode)
        self.stop, self.log = stop, log
        # capture: the child's output goes through `log` line by line (beside a live progress
        # display); otherwise it writes to our terminal itself (its progress bar redraws).
        self._capture = capture
        self._ranks = ranks  # processes the child trains in (None: one per visible GPU)
        self._proc: subprocess.Popen[bytes] | None = None
        self._killed = False
        self._lock = threading.Lock()

    def run(self, config: Any, *, data: str | os.PathLike[str] | Sequence[Any],
            output_dir: str | os.PathLike[str], resume: bool = False,
            learning_rate: float | None = None, init_adapter: str | None = None,
            callbacks: Sequence[Any] = ()) -> Any:
        if not self.child:
            return self._inline(config, data=data, output_dir=output_dir, resume=resume,
                                learning_rate=learning_rate, init_adapter=init_adapter,
                                callbacks=callbacks)
        return self._in_child(config, data=data, output_dir=Path(output_dir), resume=resume,
                              learning_rate=learning_rate, init_adapter=init_adapter)

    def _inline(self, config: Any, *, callbacks: Sequence[Any], **kwargs: Any) -> Any:
        from halo_forge.train import train

        every = [*([] if self.stop is None else [_stop_callback(self.stop)]), *callbacks]
        # Only what was given: train()'s own defaults stand for the rest.
        given = {k: v for k, v in kwargs.items() if v is not None}
        if every:
            given["callbacks"] = every
        try:
            return train(config, log=self.log, **given)
        finally:
            release_memory()

    def _in_child(self, config: Any, *, data: Any, output_dir: Path, resume: bool,
                  learning_rate: float | None, init_adapter: str | None) -> Any:
        from halo_forge.atomic import write_atomic
        from halo_forge.train import TrainResult

        output_dir.mkdir(parents=True, exist_ok=True)
        if not isinstance(data, (str, os.PathLike)):
            from halo_forge.records import Example
            from halo_forge.shards import write_shard

            write_shard(output_dir / EXAMPLES, data, Example)
            data = output_dir / EXAMPLES
        request = output_dir / REQUEST
        result = output_dir / RESULT
        result.unlink(missing_ok=True)
        write_atomic(request, msgspec.json.encode(Request(
            config=config, data=str(data), output_dir=str(output_dir), resume=resume,
            learning_rate=learning_rate, init_adapter=init_adapter)))
        ranks = self._ranks if self._ranks is not None else _visible_gpus()
        try:
            code = self._spawn(child_command(request, ranks=ranks))
            outcome = _read_outcome(result)
        finally:
            for leftover in (request, result, output_dir / EXAMPLES):
                leftover.unlink(missing_ok=True)
        if outcome is None:
            pid = self._proc.pid if self._proc else "?"
            how = (f"was killed by {signal.Signals(-code).name}" if code < 0
                   else f"exited with status {code}")
            if self._killed:
                how = "was stopped at once (second stop)"
            raise HaloError(f"training (child process {pid}) {how} before it finished"
                            + (" (out of host memory? see dmesg)" if code == -signal.SIGKILL
                               and not self._killed else "")
                            + "; rerun the same command to resume from its last checkpoint")
        if outcome.status == "done":
            return msgspec.convert(outcome.result, TrainResult)
        if outcome.status == "interrupted":
            raise Interrupted(outcome.message)
        if outcome.status == "oserror":
            raise OSError(outcome.errno, outcome.message, outcome.filename or None)
        raise HaloError(outcome.message)

    def _spawn(self, argv: list[str]) -> int:
        env = _child_env()
        with self._lock:
            if self._killed:
                return -signal.SIGKILL
            out = subprocess.PIPE if self._capture else None
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=out,
                stderr=subprocess.STDOUT if self._capture else None, env=env,
                start_new_session=True)
        proc = self._proc
        self.log(f"{_STARTED} {proc.pid}")
        reader = threading.Thread(target=self._forward, args=(proc,), daemon=True,
                                  name="train-output")
        if self._capture:
            reader.start()
        told, interrupted = False, False
        while True:
            try:
                code = proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                pass
            except KeyboardInterrupt:
                # Ctrl-C in a main thread that waits here (`sft train`): the child stops after
                # its step and checkpoint like any stop; a second Ctrl-C ends it at once.
                if interrupted:
                    self.kill()
                    raise
                interrupted = True
                self._tell(proc, "stop SIGINT\n")
                told = True
                continue
            if not told and self.stop is not None and self.stop.requested:
                told = True
                self._tell(proc, f"stop {self.stop.reason}\n")
        if self._capture:
            reader.join(timeout=10)
        _close(proc.stdin)
        self.log(f"training child process {proc.pid} exited")
        if interrupted:
            raise KeyboardInterrupt
        return code

    def _forward(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            if line.strip():
                self.log(line)
        proc.stdout.close()

    @staticmethod
    def _tell(proc: subprocess.Popen[bytes], message: str) -> None:
        try:
            assert proc.stdin is not None
            proc.stdin.write(message.encode())
            proc.stdin.flush()
        except (BrokenPipeError, OSError):  # it has just exited: its outcome says how
            pass

    def kill(self) -> None:
        """Ends a child now, with every process of its session (a launcher's ranks too)."""
        with self._lock:
            self._killed = True
            proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _close(stream: Any) -> None:
    try:
        if stream is not None:
            stream.close()
    except OSError:
        pass


def _visible_gpus() -> int:
    from halo_forge.generate.vllm_preflight import visible_gpus

    return visible_gpus()


def _child_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # The child must import this halo_forge: a checkout run through PYTHONPATH or an editable
    # install is not on a fresh interpreter's path otherwise. An installed package is, and its
    # site-packages must not go ahead of the standard library.
    import site

    root = str(Path(__file__).resolve().parent.parent)
    installed = {os.path.realpath(p) for p in (*site.getsitepackages(),
                                               site.getusersitepackages())}
    if os.path.realpath(root) not in installed:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


def _read_outcome(path: Path) -> Outcome | None:
    try:
        return msgspec.json.decode(path.read_bytes(), type=Outcome)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None


def _stop_callback(stop: Any) -> Any:
    """Ends training after the step in which a stop was requested. Under a launcher every rank
    must stop at the same step (one that stops alone leaves the others waiting in a collective
    forever), so the ranks agree on the flag first."""
    from transformers import TrainerCallback

    from halo_forge import faults

    class StopAtStep(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            faults.point("train.step")
            if _agreed(stop.requested):
                raise Interrupted(stop.reason)
            return control

    return StopAtStep()


def _agreed(flag: bool) -> bool:
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return flag
    device = (torch.device("cuda", torch.cuda.current_device())
              if dist.get_backend() == "nccl" else torch.device("cpu"))
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


# --- the child's side -----------------------------------------------------------------------


def _watch_parent(stop: Any) -> None:
    """stdin carries the parent's stop; its end means the parent is gone."""
    for line in sys.stdin:
        word, _, reason = line.strip().partition(" ")
        if word == "stop":
            stop.request(reason or "stop")
    # No parent to hand a result to, and a rerun may already be resuming this run.
    os._exit(3)


def main(argv: Sequence[str] | None = None) -> int:
    # Stops come from the parent (the child has a session of its own, but a launcher's ranks
    # may still see a signal sent to the group): one place decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    args = list(sys.argv[1:] if argv is None else argv)
    request_path = Path(args[0])
    request = msgspec.json.decode(request_path.read_bytes(), type=Request)
    out = Path(request.output_dir)
    main_rank = int(os.environ.get("RANK", "0")) == 0

    from halo_forge.raft import Stopper

    stop = Stopper()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.request("SIGTERM"))
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        threading.Thread(target=_watch_parent, args=(stop,), daemon=True,
                         name="parent-watch").start()

    def log(line: str) -> None:
        if main_rank:
            print(line, flush=True)

    outcome: Outcome
    try:
        from halo_forge.train import SFTConfig, train

        config = msgspec.convert(request.config, SFTConfig)
        result = train(config, data=request.data, output_dir=out, resume=request.resume,
                       learning_rate=request.learning_rate, init_adapter=request.init_adapter,
                       callbacks=[_stop_callback(stop)], log=log)
        outcome = Outcome(status="done", result=msgspec.to_builtins(result))
    except Interrupted as exc:
        outcome = Outcome(status="interrupted", message=str(exc))
    except HaloError as exc:
        outcome = Outcome(status="error", message=str(exc))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        from halo_forge.oserrors import user_error

        named = user_error(exc, out)
        if named is not None:
            outcome = Outcome(status="error", message=str(named))
        elif isinstance(exc, OSError) and exc.errno:
            outcome = Outcome(status="oserror", errno=exc.errno, message=exc.strerror or "",
                              filename=str(exc.filename or ""))
        else:
            import traceback

            traceback.print_exc()  # a bug: its traceback reaches the parent's log
            outcome = Outcome(status="crashed", message=(
                f"training failed in its child process: {type(exc).__name__}: {exc} "
                "(traceback above)"))
    if main_rank:
        from halo_forge.atomic import write_atomic

        write_atomic(out / RESULT, msgspec.json.encode(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main())

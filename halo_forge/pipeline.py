"""The whole run: data -> sft -> raft cycles -> benchmark, resumable, interruptible.

    OUTPUT/
      pipeline.toml, config.json   the file given and the values used
      state/<stage>.json           completion records (see pipeline_state.py)
      model/                       the tiny model, when model.tiny = true
      data/ train.shard test.shard sft.shard
      sft/                         the SFT run (checkpoints, final_model)
      raft/cycle_N/                samples.shard verdicts.shard kept.shard train/ eval/
      cycle_N_final/               the adapter after cycle N
      metrics.jsonl metrics.png    one line per finished cycle, and the rates plotted
      benchmark/                   the final adapter on the held-out split

Every stage checks its state first: done with the same config -> skipped; done or started
with another config -> an error naming the keys; otherwise it runs (or continues: SFT from its
last checkpoint, a cycle from its shards). Stops (SIGINT/SIGTERM) are honoured at safe points:
between batches, between training steps, between stages.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import msgspec

from halo_forge import faults
from halo_forge.atomic import write_atomic
from halo_forge.config import PipelineConfig, flatten
from halo_forge.errors import HaloError, first_error, leaves
from halo_forge.filter import FilterConfig
from halo_forge.generate.base import VLLMConfig
from halo_forge.generate.vllm_preflight import check_launch, check_memory_plan, visible_gpus
from halo_forge.metrics import METRICS, PLOT, CycleMetrics, plot, write_metrics
from halo_forge.oserrors import user_error
from halo_forge.paths import check_output_dir
from halo_forge.pipeline_state import StageState, StateStore
from halo_forge.progress import Progress
from halo_forge.raft import (
    VERDICTS,
    Interrupted,
    Stopper,
    _read_partial,
    check_problems,
    cycle_learning_rate,
    filter_cycle,
    generate_and_verify,
)
from halo_forge.records import Example, Problem, Verdict, untested_warning
from halo_forge.run_lock import RunLock
from halo_forge.trackers import CycleTrackers, check_trackers, trainer_report_to

log = logging.getLogger(__name__)

STAGES = ("data", "sft", "raft", "benchmark")
_DEPENDS = {
    "data": ("model", "data"),
    "sft": ("model", "data", "sft"),
    "raft": ("model", "data", "sft", "raft", "generation", "verifier"),
    "benchmark": ("model", "data", "sft", "raft", "generation", "verifier", "benchmark"),
}


class RunSummary(msgspec.Struct, kw_only=True):
    output_dir: str
    cycles_done: int = 0
    final_adapter: str = ""
    metrics: list[CycleMetrics] = []
    benchmark: dict[str, Any] = {}
    skipped: list[str] = []  # stages found done and skipped


def _read_problems(path: Path) -> list[Problem]:
    from halo_forge.shards import read_shards

    return list(read_shards(path, Problem))


def load_prompts(path: str, *, language: str | None = None) -> list[Problem]:
    """A prompts JSONL (see prompts_file.py: rows may lack `id`, and `language` when a default
    is given) or a Problem shard."""
    from halo_forge.prompts_file import read_prompts
    from halo_forge.shards import SUFFIX

    p = Path(path)
    if not p.exists():
        raise HaloError(f"{p}: no such prompts file (data.prompts / --prompts)")
    if p.is_dir() or p.suffix == SUFFIX:
        return _read_problems(p)
    return read_prompts(p, language=language)


class Pipeline:
    def __init__(self, config: PipelineConfig, *, config_text: str = "",
                 force: Sequence[str] = (), progress: Progress | None = None,
                 stop: Stopper | None = None) -> None:
        self.config = config
        self.out = Path(config.output.dir)
        self.progress = progress or Progress(config.output.progress)
        self.stop = stop or Stopper()
        self.config_text = config_text
        for name in force:
            if name not in STAGES:
                raise HaloError(f"--force-stage {name}: not a stage (stages: "
                                f"{', '.join(STAGES)})")
        self._force_stages = tuple(force)
        check_trackers(config.output.trackers)
        if isinstance(config.generation.engine, VLLMConfig):
            check_launch(config.generation.engine)
            check_memory_plan(config.generation.engine, gpus=visible_gpus())
        self.states: StateStore = None  # type: ignore[assignment]  # set by open()
        self._lock = RunLock(self.out)
        self._backend: Any = None
        self._verifier: Any = None
        self._too_long = 0  # prompts dropped for not fitting the context
        self.summary = RunSummary(output_dir=str(self.out))

    # --- bookkeeping ---------------------------------------------------------------------

    def open(self) -> None:
        """Takes the output folder: checks it, locks it against a second run, applies
        --force-stage, and refuses a changed config before anything in the folder changes."""
        check_output_dir(self.out, what="output.dir (--output)")
        self.out.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        try:
            self.states = StateStore(self.out)
            for name in self._force_stages:
                self._force(name)
            self._preflight()
            self._write_config()
        except BaseException:
            self._lock.release()
            raise

    def _preflight(self) -> None:
        """Every recorded stage whose config changed is refused now, before pipeline.toml and
        config.json are rewritten: a refused rerun must leave the folder describing its shards."""
        def order(stage: str) -> tuple[int, int]:  # the earliest change is the one named
            base, _, cycle = stage.partition("_cycle_")
            return (STAGES.index(base) if base in STAGES else len(STAGES),
                    int(cycle) if cycle.isdigit() else 0)

        for stage in sorted(self.states.stages(), key=order):
            base = stage.split("_cycle_")[0]
            if base in _DEPENDS:
                label = f"raft cycle {stage.rsplit('_', 1)[1]}" if "_cycle_" in stage \
                    else f"stage {stage}"
                self.states.check(stage, self._values(base), label=label, force_hint=base)

    def _force(self, name: str) -> None:
        later = STAGES[STAGES.index(name):]
        for stage in self.states.stages():
            if stage.split("_cycle_")[0] in later:
                self.states.clear(stage)
        # Outputs that a resume would otherwise continue from.
        if "sft" in later:
            shutil.rmtree(self.out / "sft", ignore_errors=True)
        if "raft" in later:
            shutil.rmtree(self.out / "raft", ignore_errors=True)
            for d in self.out.glob("cycle_*_final"):
                shutil.rmtree(d, ignore_errors=True)
            (self.out / METRICS).unlink(missing_ok=True)
        if "benchmark" in later:
            shutil.rmtree(self.out / "benchmark", ignore_errors=True)
        self.progress.log(f"--force-stage {name}: redoing {', '.join(later)}")

    def _values(self, stage: str) -> dict[str, Any]:
        return flatten(self.config, _DEPENDS[stage])

    def _begin(self, stage: str, dep: str, label: str) -> StageState:
        return self.states.begin(stage, self._values(dep), label=label, force_hint=dep)

    def _finish(self, state: StageState, result: dict[str, Any]) -> None:
        state.done, state.phase, state.result = True, "done", result
        self.states.save(state)

    def _write_config(self) -> None:
        if self.config_text:
            write_atomic(self.out / "pipeline.toml", self.config_text.encode())
        write_atomic(self.out / "config.json",
                     msgspec.json.format(msgspec.json.encode(self.config)))

    # --- the run -------------------------------------------------------------------------

    async def run(self) -> RunSummary:
        if self.states is None:
            self.open()
        try:
            model = self._model()
            train, test = self._data(model)
            self.stop.check()
            sft_adapter = adapter = await self._sft(model)
            self.stop.check()
            adapter = await self._raft(model, adapter, train, test)
            self.stop.check()
            await self._benchmark(model, adapter, sft_adapter, train, test)
            self._report()
        finally:
            await self._close()
            self._lock.release()
        self.summary.final_adapter = adapter
        return self.summary

    async def _close(self) -> None:
        if self._verifier is not None:
            verifier, self._verifier = self._verifier, None
            with anyio.CancelScope(shield=True):
                await verifier.__aexit__(None, None, None)
        if self._backend is not None:
            backend, self._backend = self._backend, None
            backend.close()

    def _model(self) -> str:
        m = self.config.model
        if not m.tiny:
            return m.name
        from halo_forge.tiny_model import base_recipe, build_tiny_model

        path = self.out / "model"
        if not (path / "config.json").exists():
            self.progress.log(f"building the tiny model in {path}")
        d = self.config.data
        # Pretrained on the training split only: a changed split must not leak held-out
        # problems into the base the benchmark scores.
        base = base_recipe(d.dataset, split_seed=d.split_seed, test_fraction=d.test_fraction)
        return str(build_tiny_model(path, corpus=base.corpus, pretrain_steps=base.pretrain_steps,
                                    seed=m.tiny_seed, layers=m.tiny_layers, hidden=m.tiny_hidden,
                                    heads=m.tiny_heads))

    def _data(self, model: str) -> tuple[list[Problem], list[Problem]]:
        from halo_forge.shards import write_shard

        d = self.config.data
        state = self._begin("data", "data", "stage data")
        folder = self.out / "data"
        if state.done:
            self.summary.skipped.append("data")
            return _read_problems(folder / "train.shard"), _read_problems(folder / "test.shard")
        if d.prompts:
            train, test = load_prompts(d.prompts, language=d.default_language()), []
            warning = untested_warning(train, d.prompts)
            if warning:
                self.progress.log(warning)
        else:
            from halo_forge.data import registry
            from halo_forge.data.split import sample_order, split_problems

            spec = registry.get_spec(d.dataset)
            problems = registry.load_problems(d.dataset, from_paths=d.paths)
            train, test = split_problems(problems, seed=d.split_seed,
                                         test_fraction=d.test_fraction,
                                         official=spec.official_split)
            if d.limit:
                keep = {p.id for p in sample_order(train, seed=d.split_seed)[:d.limit]}
                train = [p for p in train if p.id in keep]
        if d.languages:
            train = [p for p in train if p.language in d.languages]
            test = [p for p in test if p.language in d.languages]
        train, test = self._fitting(model, train, test)
        check_problems(train)
        from halo_forge.train import example_from_problem

        examples = [example_from_problem(p) for p in train if p.reference.strip()]
        write_shard(folder / "train.shard", train, Problem)
        write_shard(folder / "test.shard", test, Problem)
        write_shard(folder / "sft.shard", examples, Example)
        faults.point("data.written")
        self.progress.log(f"data: {len(train)} training prompts ({len(examples)} with a "
                          f"reference for SFT), {len(test)} held out")
        self._finish(state, {"train": len(train), "test": len(test), "sft_examples": len(examples),
                             "too_long": self._too_long})
        return train, test

    def _fitting(self, model: str, train: list[Problem],
                 test: list[Problem]) -> tuple[list[Problem], list[Problem]]:
        """The problems whose prompts fit the context with max_new_tokens; the rest are
        dropped and reported here, before an engine refuses a whole batch for one of them."""
        from halo_forge.prompt_fit import context_length, describe_dropped, fit_prompts

        limit = context_length(model, self.config.generation.engine)
        if limit is None:
            return train, test
        from halo_forge.data.chat import DEFAULT_SYSTEM, load_tokenizer

        g = self.config.generation
        try:
            tokenizer = load_tokenizer(model)
        except HaloError:  # a hub model not yet downloaded: the engine loads it later
            self.progress.log(f"data: prompt lengths not checked ({model}'s tokenizer is not "
                              "on this machine yet)")
            return train, test
        system = DEFAULT_SYSTEM if g.system is None else (g.system or None)
        fitted = []
        for problems in (train, test):
            kept, dropped = fit_prompts(problems, tokenizer=tokenizer, system=system,
                                        max_new_tokens=g.max_new_tokens, limit=limit)
            self._too_long += len(dropped)
            if dropped:
                self.progress.log("data: " + describe_dropped(
                    dropped, max_new_tokens=g.max_new_tokens, limit=limit))
            fitted.append(kept)
        return fitted[0], fitted[1]

    def _sft_config(self, model: str, **overrides: Any) -> Any:
        from halo_forge.train import SFTConfig

        s = self.config.sft
        fields = {k: v for k, v in msgspec.structs.asdict(s).items()
                  if k not in ("enabled", "adapter")}
        fields.update(model=model, progress=False, save_total_limit=1,
                      report_to=trainer_report_to(self.config.output.trackers,
                                                  tensorboard=self.config.output.tensorboard))
        fields.update(overrides)
        return SFTConfig(**fields)

    async def _train(self, label: str, **kwargs: Any) -> Any:
        """One training run, resumed from its last checkpoint. On GPUs it runs in a child
        process (train_process.py), whose exit hands every byte back before an engine is built
        or woken; a second stop kills the child, as it would end an inline run."""
        from halo_forge.train_process import Trainer

        trainer = Trainer(mode=kwargs["config"].train_process, stop=self.stop,
                          log=self.progress.log)
        self.progress.log(f"{label}: training" + (" in a child process" if trainer.child else ""))
        try:
            return await anyio.to_thread.run_sync(
                functools.partial(trainer.run, resume=True, **kwargs),
                abandon_on_cancel=trainer.child)
        except anyio.get_cancelled_exc_class():
            trainer.kill()
            raise

    async def _sft(self, model: str) -> str:
        s = self.config.sft
        state = self._begin("sft", "sft", "stage sft")
        if state.done:
            self.summary.skipped.append("sft")
            return state.result.get("adapter", "")
        if not s.enabled:
            self._finish(state, {"adapter": s.adapter})
            return s.adapter
        start = time.perf_counter()
        result = await self._train(
            "sft", config=self._sft_config(model, init_adapter=s.adapter),
            data=self.out / "data" / "sft.shard", output_dir=self.out / "sft")
        self.progress.log(f"sft: {result.global_step} steps on {result.train_examples} examples, "
                          f"loss {result.first_loss} -> {result.last_loss} "
                          f"({time.perf_counter() - start:.0f}s)")
        faults.point("sft.trained")
        self._finish(state, {"adapter": result.adapter_dir, "steps": result.global_step,
                             "train_loss": result.train_loss})
        return result.adapter_dir

    # --- raft ----------------------------------------------------------------------------

    async def _verifier_ready(self) -> Any:
        if self._verifier is None:
            from halo_forge.cluster import open_verifier

            verifier = open_verifier(self.config.verifier, self.config.cluster)
            await verifier.__aenter__()
            if self.config.cluster.enabled:
                self.progress.log(verifier.describe())
            self._verifier = verifier
        return self._verifier

    async def _backend_ready(self, model: str, adapter: str) -> Any:
        """_backend_for in a worker thread: building an engine and probing an adapter take
        minutes, and progress, signals and the verifier keep running meanwhile."""
        return await anyio.to_thread.run_sync(self._backend_for, model, adapter)

    def _backend_for(self, model: str, adapter: str) -> Any:
        """The generation backend on the adapter's own base model, with `adapter` applied."""
        from halo_forge.generate import make_backend
        from halo_forge.model_loading import read_adapter_meta

        base = read_adapter_meta(adapter).base_model if adapter else model
        if adapter and model and base != model and base.startswith(("/", ".")) \
                and not Path(base).exists():
            # The adapter's recorded base folder moved or was deleted: the base the user
            # names ([model] / --model) is the only one left to generate from.
            self.progress.log(f"adapter {adapter} names base {base}, which is gone; "
                              f"using {model}")
            base = model
        if self._backend is not None and self._backend.model != base:
            self._backend.close()
            self._backend = None
        if self._backend is None:
            engine = msgspec.structs.replace(self.config.generation.engine, model=base,
                                             adapter=adapter,
                                             system=self.config.generation.system)
            self.progress.log(f"loading {type(engine).__name__} "
                              f"generation backend: {base}" + (f" + {adapter}" if adapter else ""))
            self._backend = make_backend(engine)
        elif self._backend.adapter != adapter:
            self._backend.load_adapter(adapter or None)
        return self._backend

    def _sampling(self, *, seed: int, temperature: float | None = None) -> Any:
        g = self.config.generation
        return g.sampling(seed=seed, **({} if temperature is None else
                                        {"temperature": temperature}))

    def _metrics_rows(self) -> list[CycleMetrics]:
        rows = []
        for c in range(1, 10_000):
            st = self.states.load(f"raft_cycle_{c}")
            if st is None:
                break
            if st.done and "metrics" in st.result:
                rows.append(msgspec.convert(st.result["metrics"], CycleMetrics))
        return rows

    def _early_stop(self, rows: list[CycleMetrics]) -> bool:
        r = self.config.raft
        if not (r.eval and r.patience):
            return False
        scores = [m.eval_pass_at_1 for m in rows if m.eval_pass_at_1 is not None]
        if len(scores) <= r.patience:
            return False
        best_before = max(scores[:-r.patience])
        return max(scores[-r.patience:]) <= best_before

    async def _raft(self, model: str, adapter: str, train: list[Problem],
                    test: list[Problem]) -> str:
        r = self.config.raft
        o = self.config.output
        tb = CycleTrackers(self.out, o.trackers, tensorboard=o.tensorboard,
                           run_name=self.out.name, config=msgspec.to_builtins(self.config))
        try:
            for cycle in range(1, r.cycles + 1):
                self.stop.check()
                state = self._begin(f"raft_cycle_{cycle}", "raft", f"raft cycle {cycle}")
                if state.done:
                    adapter = state.result.get("adapter", adapter)
                    self.summary.skipped.append(f"raft_cycle_{cycle}")
                    self.summary.cycles_done = cycle
                    continue
                rows = self._metrics_rows()
                if self._early_stop(rows):
                    self.progress.log(f"raft: held-out pass@1 has not improved for "
                                      f"{r.patience} cycles; stopping early after cycle "
                                      f"{cycle - 1}")
                    break
                adapter = await self._cycle(cycle, state, model, adapter, train, test)
                self.summary.cycles_done = cycle
                rows = self._metrics_rows()
                write_metrics(self.out / METRICS, rows)
                if self.config.output.plot:
                    plot(rows, self.out / PLOT)
                if rows:
                    tb.log(rows[-1])
        finally:
            tb.close()
        # Rewritten from the cycles' records every time, so a stop between a cycle's record
        # and its metrics line cannot leave metrics.jsonl behind the records.
        self.summary.metrics = self._metrics_rows()
        write_metrics(self.out / METRICS, self.summary.metrics)
        if self.config.output.plot and self.summary.metrics:
            plot(self.summary.metrics, self.out / PLOT)
        return adapter

    async def _cycle(self, cycle: int, state: StageState, model: str, adapter_in: str,
                     train: list[Problem], test: list[Problem]) -> str:
        r = self.config.raft
        cycle_dir = self.out / "raft" / f"cycle_{cycle}"
        # What earlier phases of this cycle measured, kept across a stop (the record's own
        # `cycle` included: it is this cycle's).
        metrics = msgspec.convert({**state.result.get("partial", {}), "cycle": cycle},
                                  CycleMetrics)
        label = f"cycle {cycle}/{r.cycles}"

        if state.phase in ("", "generating"):
            state.phase = "generating"
            state.result["adapter_in"] = adapter_in
            self.states.save(state)
            faults.point("raft.cycle.generating")
            backend = await self._backend_ready(model, adapter_in)
            verifier = await self._verifier_ready()
            total = len(train) * r.samples_per_prompt
            # A resumed cycle's bar starts at the verdicts it already has.
            resumed = len({v.id for v in _read_partial(cycle_dir / VERDICTS, Verdict)})
            with self.progress.task(f"{label}: generate + verify", total=total,
                                    completed=resumed) as bar:
                stats = await generate_and_verify(
                    problems=train, backend=backend, verifier=verifier, cycle=cycle,
                    cycle_dir=cycle_dir, samples_per_prompt=r.samples_per_prompt,
                    settings=self._sampling(seed=r.seed * 1_000_003 + cycle * 7919),
                    buffer_batches=r.buffer_batches,
                    concurrency=verifier.config.concurrency, stop=self.stop,
                    on_verdict=lambda v: bar.advance(1))
            rates = stats.rates()
            metrics = msgspec.structs.replace(
                metrics, samples=stats.samples, verdicts=stats.verdicts,
                sandbox_errors=stats.sandbox_errors, statuses=stats.statuses, guards=stats.guards,
                compile_rate=rates["compile_rate"], pass_rate=rates["pass_rate"],
                run_rate=rates["run_rate"], mean_reward=rates["mean_reward"], tokens_per_s=rates["tokens_per_s"],
                verify_per_s=rates["verify_per_s"], gen_s=stats.gen_s,
                gen_verify_s=stats.wall_s, gen_wait_s=stats.gen_wait_s,
                verify_wait_s=stats.verify_wait_s,
                resumed=bool(stats.resumed_samples or stats.resumed_verdicts))
            self.progress.log(
                f"{label}: {stats.verdicts} verified: pass {rates['pass_rate']:.1%}, "
                + (f"ran without tests {rates['run_rate']:.1%}, " if stats.ran else "") +
                f"compile "
                f"{rates['compile_rate']:.1%}, mean reward {rates['mean_reward']:.3f}, "
                f"{stats.sandbox_errors} sandbox errors; {stats.wall_s:.1f}s (generation waited "
                f"{stats.gen_wait_s:.1f}s on verification, verification {stats.verify_wait_s:.1f}s"
                f" on generation)")
            state.phase = "verified"
            state.result["partial"] = msgspec.to_builtins(metrics)
            self.states.save(state)
            faults.point("raft.cycle.verified")
        self.stop.check()

        start = time.perf_counter()
        examples, report = filter_cycle(
            cycle_dir, train, config=FilterConfig(
                reward_threshold=r.reward_threshold, keep_top_percent=r.keep_top_percent,
                max_per_prompt=r.max_per_prompt, dedupe=r.dedupe, seed=r.seed + cycle),
            system=self.config.generation.system)
        metrics = msgspec.structs.replace(
            metrics, kept=report.kept, kept_prompts=report.prompts_kept,
            filter_removed=report.removed, filter_s=time.perf_counter() - start)
        self.progress.log(f"{label}: filter: {report.describe()}")
        faults.point("raft.cycle.filtered")

        adapter_out = adapter_in
        lr = cycle_learning_rate(r.learning_rate, r.lr_decay, cycle)
        final = self.out / f"cycle_{cycle}_final"
        if state.phase == "trained":
            adapter_out = state.result["adapter"]
        elif examples:
            start = time.perf_counter()
            if self._backend is not None:
                self._backend.sleep()  # the accelerator's memory goes to training
            overrides: dict[str, Any] = dict(
                epochs=r.epochs, max_steps=r.max_steps, eval_fraction=0.0,
                init_adapter=adapter_in, learning_rate=lr, seed=r.seed + cycle)
            if r.batch_size:
                overrides["batch_size"] = r.batch_size
            if r.grad_accum:
                overrides["grad_accum"] = r.grad_accum
            result = await self._train(
                f"{label}", config=self._sft_config(model, **overrides), data=examples,
                output_dir=cycle_dir / "train", learning_rate=lr,
                init_adapter=adapter_in or "")
            if self._backend is not None:
                self._backend.wake_up()
            faults.point("raft.cycle.trained")
            # A stop between these two lines leaves the cycle "verified": the rerun resumes
            # training from its last checkpoint, which writes final_model again.
            if final.exists():
                shutil.rmtree(final)
            os.replace(result.adapter_dir, final)
            faults.point("raft.cycle.adapter_moved")
            adapter_out = str(final)
            metrics = msgspec.structs.replace(
                metrics, train_s=time.perf_counter() - start, train_steps=result.global_step,
                train_loss=result.train_loss, learning_rate=lr)
            state.phase = "trained"
            state.result["adapter"] = adapter_out
            state.result["partial"] = msgspec.to_builtins(metrics)
            self.states.save(state)
            faults.point("raft.cycle.recorded_trained")
        else:
            self.progress.log(f"{label}: nothing kept; the adapter stays {adapter_in or 'the base model'}")
        self.stop.check()

        if r.eval and test:
            start = time.perf_counter()
            # Evaluation is redone whole after a stop (it is short); a killed one's files go.
            shutil.rmtree(cycle_dir / "eval", ignore_errors=True)
            summary = await self._evaluate(model, adapter_out, test, samples=r.eval_samples,
                                           ks=[1], folder=cycle_dir / "eval", cycle=cycle,
                                           temperature=None)
            metrics = msgspec.structs.replace(
                metrics, eval_pass_at_1=summary.pass_at_k.get(1, 0.0),
                eval_compile_rate=summary.compile_at_k.get(1, 0.0),
                eval_s=time.perf_counter() - start)
            self.progress.log(f"{label}: held-out pass@1 {metrics.eval_pass_at_1:.1%}, "
                              f"compile {metrics.eval_compile_rate:.1%}")
            faults.point("raft.cycle.evaluated")
        self._finish(state, {"adapter": adapter_out, "adapter_in": adapter_in,
                             "metrics": msgspec.to_builtins(metrics),
                             "filter": msgspec.to_builtins(report)})
        faults.point("raft.cycle.done")
        return adapter_out

    # --- evaluation ----------------------------------------------------------------------

    async def _evaluate(self, model: str, adapter: str, problems: list[Problem], *,
                        samples: int, ks: list[int], folder: Path, cycle: int,
                        temperature: float | None) -> Any:
        from halo_forge.benchmark_eval import evaluate

        backend = await self._backend_ready(model, adapter)
        verifier = await self._verifier_ready()
        result = None
        with self.progress.task(f"evaluate {folder.relative_to(self.out)}",
                                total=len(problems) * samples) as bar:
            # An evaluation is redone whole after a stop, so a stop ends it at once (a
            # benchmark can take hours) instead of at its end.
            async with anyio.create_task_group() as tg:
                async def stop_watch() -> None:
                    await self.stop.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(stop_watch)
                result = await evaluate(
                    problems=problems, backend=backend, samples=samples, ks=ks,
                    verifier_config=self.config.verifier,
                    # On a cluster the run's own workers; here a verifier of its own on the
                    # run's sandbox, as always.
                    **({"verifier": verifier} if self.config.cluster.enabled
                       else {"sandbox": verifier.sandbox}),
                    output_dir=folder,
                    meta={"adapter": adapter, "cycle": cycle}, cycle=cycle,
                    sampling=self._sampling(seed=self.config.raft.seed + 17 * cycle,
                                            temperature=temperature),
                    dataset=self.config.data.dataset,
                    concurrency=verifier.config.concurrency,
                    progress=lambda done, total: bar.advance(1))
                tg.cancel_scope.cancel()
        self.stop.check()
        return result

    def _benchmark_parts(self, adapter: str, sft_adapter: str,
                         train: list[Problem], test: list[Problem]
                         ) -> list[tuple[str, str, str, list[Problem], Path]]:
        """(key, label, adapter, problems, folder) of each score the benchmark stage records:
        the final adapter held out (the record's own keys, OUTPUT/benchmark), then on the
        training split, then the base model and the SFT adapter held out (the gain)."""
        from halo_forge.run_report import BASE, SFT, TRAIN_SPLIT

        b = self.config.benchmark
        cap = (lambda ps: ps[: b.max_problems]) if b.max_problems else (lambda ps: ps)
        folder = self.out / "benchmark"
        parts = [("", "the final adapter on the held-out split", adapter, cap(test), folder)]
        if b.train_split and train:
            parts.append((TRAIN_SPLIT, "the final adapter on the training split", adapter,
                          cap(train), folder / TRAIN_SPLIT))
        if b.baselines:
            if adapter:
                parts.append((BASE, "the base model on the held-out split", "", cap(test),
                              folder / BASE))
            if sft_adapter and sft_adapter != adapter:
                parts.append((SFT, "the SFT adapter on the held-out split", sft_adapter,
                              cap(test), folder / SFT))
        return parts

    async def _benchmark(self, model: str, adapter: str, sft_adapter: str,
                         train: list[Problem], test: list[Problem]) -> None:
        from halo_forge.run_report import rates_text, scores

        b = self.config.benchmark
        state = self._begin("benchmark", "benchmark", "stage benchmark")
        scored = state.result.get("adapter")
        if state.done and scored is not None and scored != adapter:
            # The run went on after its benchmark (more cycles): the numbers must be the final
            # adapter's, never an earlier one's beside its name.
            self.progress.log(f"benchmark: it scored {scored or 'the base model'}; the final "
                              f"adapter is now {adapter or 'the base model'}: benchmarking it")
            self.states.clear("benchmark")
            state = self._begin("benchmark", "benchmark", "stage benchmark")
        if state.done:
            self.summary.skipped.append("benchmark")
            self.summary.benchmark = state.result
            return
        if not b.enabled or not test:
            if b.enabled:
                self.progress.log("benchmark: no held-out problems (data.test_fraction = 0 or "
                                  "data.prompts); skipped")
            self._finish(state, {"skipped": True, "adapter": adapter})
            return
        # Each part is recorded as it finishes, so a stop redoes only the part it cut short
        # (an evaluation itself is not resumable: its folder starts clean).
        done: dict[str, Any] = state.result.setdefault("parts", {})
        for key, label, part_adapter, problems, folder in self._benchmark_parts(
                adapter, sft_adapter, train, test):
            if done.get(key, {}).get("adapter") == part_adapter:
                continue
            if key:
                shutil.rmtree(folder, ignore_errors=True)
            else:  # OUTPUT/benchmark itself: its files, not the other parts' folders
                for f in folder.glob("*"):
                    if f.is_file():
                        f.unlink()
            summary = await self._evaluate(model, part_adapter, problems, samples=b.samples,
                                           ks=list(b.ks), folder=folder, cycle=0,
                                           temperature=b.temperature)
            done[key] = scores(summary, adapter=part_adapter)
            self.progress.log(f"benchmark: {label} ({len(problems)} problems): "
                              f"{rates_text(done[key])}")
            self.states.save(state)
            faults.point("benchmark.part_evaluated")
        faults.point("benchmark.evaluated")
        result = {**done.pop(""), **done}
        self._finish(state, result)
        self.summary.benchmark = result

    def _report(self) -> None:
        """OUTPUT/report.md from the records (rewritten at every end, so it matches them)."""
        from halo_forge.run_report import REPORT, markdown

        write_atomic(self.out / REPORT, markdown(
            self.summary.benchmark, self.summary.metrics,
            sft_enabled=self.config.sft.enabled).encode())


# --- the command -----------------------------------------------------------------------------

INTERRUPTED = "interrupted; rerun the same command to resume"


# How long a second stop waits for cancellation to unwind before the process exits anyway.
STUCK_GRACE_S = 5.0


def _exit_if_stuck(progress: Progress, code: int) -> None:
    """A second stop means now, but cancellation cannot interrupt a worker thread that is
    inside a library call (a generate() on CPU can run for minutes). Every state a run can be
    killed in resumes (the crash matrix proves it), so after a short grace the process leaves
    without waiting for the thread, the way a kill would."""
    import threading

    def leave() -> None:
        progress.log("halo-forge: a worker thread is still busy; leaving without it. "
                     f"{INTERRUPTED}")
        os._exit(code)

    timer = threading.Timer(STUCK_GRACE_S, leave)
    timer.daemon = True
    timer.start()


def run_pipeline(config: PipelineConfig, *, config_text: str = "", force: Sequence[str] = (),
                 progress: Progress | None = None) -> tuple[int, RunSummary | None]:
    """Runs the pipeline under signal handling; (exit code, summary). SIGINT/SIGTERM stop it at
    the next safe point (exit 130/143); a second signal stops it at once."""
    progress = progress or Progress(config.output.progress)
    stop = Stopper()
    pipeline = Pipeline(config, config_text=config_text, force=force, progress=progress,
                        stop=stop)
    received: list[int] = []

    async def main() -> RunSummary:
        async with anyio.create_task_group() as tg:
            async def watch() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for signum in signals:
                        received.append(signum)
                        name = signal.Signals(signum).name
                        if len(received) == 1:
                            progress.log(f"{name}: stopping at the next safe point (send it "
                                         "again to stop at once)")
                            stop.request(name)
                        else:
                            progress.log(f"{name} again: stopping now")
                            tg.cancel_scope.cancel()
                            _exit_if_stuck(progress, 128 + received[0])

            tg.start_soon(watch)
            result = await pipeline.run()
            tg.cancel_scope.cancel()
            return result

    try:
        summary = anyio.run(main)
    except BaseException as exc:  # noqa: BLE001 - sorted out below
        leaf = first_error(exc)
        if isinstance(leaf, Interrupted) or received:
            progress.log(f"halo-forge: {INTERRUPTED}")
            code = 128 + (received[0] if received else signal.SIGINT)
            return code, None
        # A full disk fails every task writing at once: any of them names it.
        for candidate in (leaf, *leaves(exc)):
            named = user_error(candidate, pipeline.out)
            if named is not None:
                raise named from None
        if isinstance(leaf, BaseException) and leaf is not exc:
            raise leaf from None
        raise
    if summary is None:  # cancelled by a second signal
        progress.log(f"halo-forge: {INTERRUPTED}")
        return 128 + (received[0] if received else signal.SIGINT), None
    return 0, summary

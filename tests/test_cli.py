"""The top-level CLI: bad usage is one line naming the fix, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from halo_forge.cli import main


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["verfy"], "did you mean 'verify'?"),
        (["data", "prepare", "--datset", "mbpp"], "did you mean '--dataset'?"),
        (["sft", "trian"], "did you mean 'train'?"),
        # The flag whose help names what was typed, not the nearest spelling (`--k`).
        (["benchmark", "run", "--n", "10"], "did you mean '--samples'?"),
        (["benchmark", "run", "--sampels", "10"], "did you mean '--samples'?"),
    ],
)
def test_typos_get_a_one_line_hint(argv, hint, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("halo-forge: error: ") and hint in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("flag", ["--model", "--model=x"])
def test_a_group_given_options_without_its_command_names_the_missing_command(flag, capsys):
    argv = ["benchmark", flag] + (["x"] if "=" not in flag else ["--samples", "3"])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "command is missing" in err and "`halo-forge benchmark run --model" in err
    assert "invalid choice" not in err and err.count("\n") == 1


def test_no_command_prints_help_and_fails(capsys) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_module_entry_point_reports_errors_without_traceback() -> None:
    done = subprocess.run([sys.executable, "-m", "halo_forge", "verify", "missing.jsonl",
                           "--out", "x.jsonl"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("halo-forge: error: ") and "missing.jsonl" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("reader", ["head", "close_early"])
def test_a_reader_that_stops_early_gets_no_traceback(tmp_path, reader) -> None:
    # Far more than a pipe holds, so the writer is still writing when the reader goes.
    from halo_forge.records import Sample
    from halo_forge.shards import write_shard

    write_shard(tmp_path / "big.shard", [Sample(id=f"s{i}", problem_id="p", index=i,
                                                completion="x" * 200) for i in range(5000)],
                Sample)
    cmd = [sys.executable, "-m", "halo_forge", "data", "inspect", str(tmp_path / "big.shard")]
    if reader == "head":
        done = subprocess.run(" ".join(cmd) + " | head -n 1; echo \"rc=${PIPESTATUS[0]}\" >&2",
                              shell=True, executable="/bin/bash", capture_output=True,
                              text=True, timeout=120)
        assert done.stdout.count("\n") == 1 and '"id":"s0"' in done.stdout
        err = done.stderr
        assert "rc=141" in err
    else:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert b'"id":"s0"' in proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception" not in err, err


def _bad_output_cases(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    src = tmp_path / "in.jsonl"
    src.write_text("")
    missing = str(tmp_path / "missing")
    return [
        (["benchmark", "run", "--model", missing, "--prompts", missing, "--output", a_file],
         "benchmark run --output", "is a file"),
        (["sft", "train", "--data", missing, "--output", a_file / "run"],
         "sft train --output", "is a file"),
        (["data", "export", missing, "--out", "/proc/halo-forge.jsonl"],
         "data export --out", "cannot create files"),
        (["data", "import", src, "--type", "Problem", "--out", a_file],
         "data import --out", "is a file"),
        (["data", "prepare", "--dataset", "builtin", "--output", tmp_path],
         "data prepare --output", "is a folder"),
        (["data", "prepare", "--dataset", "local", "--from", src, "--prompts", src],
         "data prepare --prompts", "is the input"),
        (["data", "prepare", "--dataset", "builtin", "--shards", "/proc/halo-forge"],
         "data prepare --shards", "cannot create files"),
        (["data", "generate", "--topic", "x", "--output", tmp_path],
         "data generate --output", "is a folder"),
        (["bench", "verify", "--corpus", src, "--json", src],
         "bench verify --json", "is the input"),
        (["run", "--output", a_file], "output.dir", "is a file"),
    ]


def test_every_command_checks_its_outputs_before_any_work(tmp_path, capsys, monkeypatch) -> None:
    import halo_forge.tiny_model

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the output path was checked")

    monkeypatch.setattr(halo_forge.tiny_model, "build_tiny_model", no_work)
    for argv, what, needle in _bad_output_cases(tmp_path):
        argv = [str(a) for a in argv]
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("halo-forge: error: ") and err.count("\n") == 1, err
        assert what in err and needle in err, (argv, err)


def test_shared_flags_come_from_the_settings_structs():
    from halo_forge.cli import build_parser
    from halo_forge.config import GenerationSection
    from halo_forge.verify.config import VERIFIERS, VerifierConfig

    parser = build_parser()
    for argv in (["verify", "in.jsonl", "--out", "v.jsonl"], ["bench", "verify"],
                 ["benchmark", "run"]):
        args = parser.parse_args(argv)
        assert (args.verifier, args.concurrency) == ("auto", None) == (
            VerifierConfig().verifier, VerifierConfig().concurrency)
        for name in VERIFIERS:  # the one list of verifier names
            assert parser.parse_args([*argv, "--verifier", name]).verifier == name
    args = parser.parse_args(["benchmark", "run"])
    g = GenerationSection()
    assert (args.temperature, args.top_p, args.max_new_tokens) == (
        g.temperature, g.top_p, g.max_new_tokens)


@pytest.mark.parametrize("group", ["data", "sft", "raft", "benchmark", "bench", "sandbox"])
def test_every_group_alone_prints_its_help_and_a_bad_command_is_one_line(group, capsys):
    assert main([group]) == 2
    assert "COMMAND" in capsys.readouterr().out
    assert main([group, "no-such-command"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("halo-forge: error: ") and err.count("\n") == 1, err


def test_run_flags_override_only_the_keys_they_name(tmp_path, monkeypatch):
    import halo_forge.cli.run as run_cli

    seen = []
    monkeypatch.setattr(run_cli, "run_config", lambda config, **kw: seen.append(config) or 0)
    toml = tmp_path / "p.toml"
    toml.write_text("[model]\ntiny = true\n[raft]\ncycles = 7\n[output]\nprogress = 'rich'\n")
    assert main(["run", str(toml)]) == 0
    assert main(["run", str(toml), "--cycles", "2", "--progress", "plain"]) == 0
    assert main(["run", str(toml), "--cycles", "-1"]) == 2  # validated like the file
    (as_written, overridden) = seen
    assert (as_written.raft.cycles, as_written.output.progress) == (7, "rich")
    assert (overridden.raft.cycles, overridden.output.progress) == (2, "plain")


def test_an_interrupted_run_says_so_once(tmp_path, monkeypatch, capsys):
    import types

    import halo_forge.pipeline as pipeline
    from halo_forge.cli.run import run_config

    def interrupted(config, *, config_text, force, progress):
        progress.log(f"halo-forge: {pipeline.INTERRUPTED}")  # what run_pipeline reports
        return 130, None

    monkeypatch.setattr(pipeline, "run_pipeline", interrupted)
    config = types.SimpleNamespace(output=types.SimpleNamespace(dir=str(tmp_path / "o"),
                                                                progress="plain"))
    assert run_config(config) == 130
    captured = capsys.readouterr()
    assert (captured.out + captured.err).count("halo-forge: interrupted") == 1

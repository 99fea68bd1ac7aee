"""The `skills` dataset: held-out problems are new combinations of parts training covers, the
tests pin both the task and the input format, and every reference passes the real verifier."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from halo_forge.data import check, registry, skills
from halo_forge.data.split import split_problems
from halo_forge.errors import HaloError

PROBLEMS = registry.load_problems("skills")
SPEC = registry.get_spec("skills")
TRAIN, TEST = split_problems(PROBLEMS, official=SPEC.official_split)


def _pairs(triples):
    return ({(t, lang) for t, _, lang in triples}, {(f, lang) for _, f, lang in triples},
            {(t, f) for t, f, _ in triples})


def test_one_problem_per_triple_and_the_test_split_is_the_held_out_triples() -> None:
    triples = [skills.triple(p) for p in PROBLEMS]
    assert sorted(triples) == sorted(itertools.product(skills.TASKS, skills.FORMATS,
                                                       skills.LANGUAGES))
    assert len({p.id for p in PROBLEMS}) == len(PROBLEMS)
    assert {skills.triple(p) for p in TEST} == skills.HELD_OUT
    # Every task, format and language is scored on held-out problems.
    tasks, formats, languages = zip(*skills.HELD_OUT)
    assert (set(tasks), set(formats), set(languages)) == (
        set(skills.TASKS), set(skills.FORMATS), set(skills.LANGUAGES))


def test_held_out_triples_are_new_combinations_of_pairs_seen_in_training() -> None:
    seen = {skills.triple(p) for p in TRAIN}
    assert not seen & skills.HELD_OUT
    task_lang, format_lang, task_format = _pairs(seen)
    for t, f, lang in skills.HELD_OUT:
        assert (t, lang) in task_lang and (f, lang) in format_lang and (t, f) in task_format, (
            t, f, lang)


def test_the_split_ignores_test_fraction_and_seed() -> None:
    # The dataset's own split wins, as the recipe's comments say: no hash can leak a held-out
    # triple into training.
    for seed, fraction in ((0, 0.25), (7, 0.5), (3, 0.0)):
        train, test = split_problems(PROBLEMS, seed=seed, test_fraction=fraction,
                                     official=SPEC.official_split)
        assert [p.id for p in test] == [p.id for p in TEST]
        assert [p.id for p in train] == [p.id for p in TRAIN]


def test_a_held_out_reference_is_made_of_blocks_training_references_show() -> None:
    # The model can only compose what it has seen: the read block of (format, language) and
    # the compute block of (task, language) are each in some training reference.
    train_refs = {skills.triple(p): p.reference for p in TRAIN}
    for t, f, lang in skills.HELD_OUT:
        ref = skills.reference(t, f, lang)
        read = skills.FORMATS[f][2][lang].split("\n")[-1]
        compute = skills.TASKS[t][2][lang].split("\n")[-1]
        assert read in ref and compute in ref
        assert any(read in r for (_, f2, l2), r in train_refs.items() if (f2, l2) == (f, lang))
        assert any(compute in r for (t2, _, l2), r in train_refs.items() if (t2, l2) == (t, lang))


def _commented_blocks(task: str, fmt: str, lang: str) -> list[tuple[str, str]]:
    return [(skills.read_sentence(fmt), skills.FORMATS[fmt][2][lang]),
            (skills.print_sentence(task), skills.TASKS[task][2][lang])]


def test_each_block_follows_a_comment_that_repeats_the_prompt_sentence_asking_for_it() -> None:
    # What makes a held-out triple local work for a small model: the comment is a copy of a
    # prompt sentence, and the block right after it is what training shows after that comment
    # in that language (held-out included: the comment + block is in a training reference).
    train_refs = {skills.triple(p): p.reference for p in TRAIN}
    for p in PROBLEMS:
        task, fmt, lang = skills.triple(p)
        lines = [line.strip() for line in p.reference.split("\n")]
        for sentence, code in _commented_blocks(task, fmt, lang):
            assert sentence in p.prompt
            i = lines.index(skills.COMMENT[lang] + sentence)
            block = [line.strip() for line in code.split("\n")]
            assert lines[i + 1:i + 1 + len(block)] == block, (p.id, sentence)
        if skills.triple(p) in skills.HELD_OUT:
            for sentence, code in _commented_blocks(task, fmt, lang):
                pad = skills.INDENT[lang]
                shown = f"{pad}{skills.COMMENT[lang]}{sentence}\n{pad}{code.split(chr(10))[0]}"
                assert shown in p.reference
                assert any(shown in r for (_, _, l2), r in train_refs.items() if l2 == lang)


def test_tests_tell_every_task_apart_and_hold_edge_cases() -> None:
    for p in PROBLEMS:
        task, _, _ = skills.triple(p)
        assert len(p.io_tests) >= 4 and p.reference.strip() and p.prompt.strip()
        outputs = [t.stdout for t in p.io_tests]
        for other in skills.TASKS:
            if other == task:
                continue
            value = skills.TASKS[other][1]
            lists = skills.input_lists(p.id)
            assert [f"{value(a)}\n" for a in lists] != outputs, (p.id, other)
        # Single elements, one negative (a maximum started from past the end fails it), a
        # list of negatives only (one started at 0 fails it), a 1 ("positive" as `> 1`).
        lists = skills.input_lists(p.id)
        assert [7] in lists and [-6] in lists and any(len(a) > 1 and max(a) < 0 for a in lists)
        assert any(1 in a and 0 in a for a in lists)


def test_the_prompt_names_the_task_format_and_language() -> None:
    for p in PROBLEMS:
        task, fmt, lang = skills.triple(p)
        assert skills.TASKS[task][0] in p.prompt and skills.FORMATS[fmt][0] in p.prompt
        assert p.prompt.endswith(f" {skills.NAMES[lang]}.")
    assert len({p.prompt for p in PROBLEMS}) == len(PROBLEMS)


@pytest.mark.slow
def test_every_reference_passes_the_sandboxed_verifier_cleanly() -> None:
    verdicts = check.reference_verdicts(PROBLEMS)
    assert set(verdicts) == {p.id for p in PROBLEMS}
    failed = {pid: (v.status, v.output[-300:]) for pid, v in verdicts.items()
              if v.status != "passed" or v.reward != 1.0 or v.warnings}
    assert failed == {}
    assert all(v.tests_passed == v.tests_total >= 6 for v in verdicts.values())


def test_a_program_for_another_input_format_fails_the_tests() -> None:
    # Hostile control for the formats: the right task read the wrong way must not pass (the
    # tests pin the format, not only the task), while the right program does.
    python = [p for p in PROBLEMS if p.language == "python" and skills.triple(p)[0] == "sum"]
    samples = []
    for p in python:
        task, fmt, lang = skills.triple(p)
        for other in skills.FORMATS:
            samples.append(check.verify_sample(p, skills.reference(task, other, lang),
                                               sample_id=f"{p.id}|{other}"))
    from halo_forge.verify import verify_many

    verdicts = {v.id: v.status for v in verify_many(samples, concurrency=2)}
    for p in python:
        fmt = skills.triple(p)[1]
        for other in skills.FORMATS:
            want = "passed" if other == fmt else "not passed"
            got = verdicts[f"{p.id}|{other}"]
            assert (got == "passed") == (other == fmt), (p.id, other, got, want)


def test_a_file_with_a_foreign_id_is_refused_in_one_line(tmp_path: Path) -> None:
    row = json.loads(json.dumps(next(iter(skills.rows()))))
    row["id"] = "skills/sum-csv-c"
    src = tmp_path / "skills.jsonl"
    src.write_text(json.dumps(row) + "\n")
    with pytest.raises(HaloError, match="not a skills id") as err:
        registry.load_problems("skills", from_paths=[src])
    assert "\n" not in str(err.value)


def test_the_generated_problems_are_stable() -> None:
    # Generated, not shipped: the same code gives the same problems (tests are seeded by id).
    again = list(skills.problems())
    assert [p.io_tests for p in again] == [p.io_tests for p in PROBLEMS]
    assert [p.reference for p in again] == [p.reference for p in PROBLEMS]


def test_the_default_recipe_runs_on_skills_and_builds_its_base_from_skills() -> None:
    from halo_forge.config import load_config
    from halo_forge.tiny_model import SKILLS_PRETRAIN_STEPS, base_recipe

    config, _ = load_config(None)
    assert config.data.dataset == "skills" and config.model.tiny
    # A LoRA no wider than the model: rank above tiny_hidden would add nothing but cost.
    assert config.sft.lora_rank <= config.model.tiny_hidden
    assert base_recipe(config.data.dataset).pretrain_steps == SKILLS_PRETRAIN_STEPS


def test_the_word_after_print_names_the_task() -> None:
    # The comment above a compute block copies the prompt from " Print" on; a small model
    # copies a token by the one before it, so the first word after "Print" must tell the
    # tasks apart by itself ("the" for four of them left the copy to chance).
    firsts = [skills.print_sentence(t).split()[1] for t in skills.TASKS]
    assert len(set(firsts)) == len(firsts)
    assert all(f not in skills.read_sentence(fmt).split() for f in firsts for fmt in skills.FORMATS)


def test_the_skills_base_sees_blocks_after_their_comments_but_no_held_out_pair_adjacent() -> None:
    from halo_forge.tiny_model import block_snippets, echo_chats

    train_prompts = [p.prompt for p in TRAIN]
    held_out = [(skills.commented_block("read", f, lang), skills.commented_block("compute", t, lang))
                for t, f, lang in skills.HELD_OUT]
    snippets = block_snippets()
    assert len(set(snippets)) > 100
    for text in snippets:
        assert not any(f"{read}\n{compute}" in text for read, compute in held_out), text
    # Every commented block is in some snippet, in each language.
    joined = "\n".join(snippets)
    for lang in skills.LANGUAGES:
        for t in skills.TASKS:
            assert skills.commented_block("compute", t, lang) in joined
        for f in skills.FORMATS:
            assert skills.commented_block("read", f, lang) in joined
    # The echo chats teach copying with random words: never a skills prompt or program.
    for text in echo_chats(TRAIN):
        assert "Write the program in" in text
        assert not any(p in text for p in train_prompts)
        assert not any(p.reference.rstrip() in text for p in PROBLEMS)

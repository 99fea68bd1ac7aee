"""Progress bars start where a resumed stage stands, not at zero."""

from __future__ import annotations

import io

import pytest

from halo_forge.progress import Progress


def test_plain_bar_of_a_resumed_stage_counts_from_the_resumed_work() -> None:
    stream = io.StringIO()
    progress = Progress("plain", stream=stream, every_s=0.0)
    with progress.task("cycle 2/3: generate + verify", total=180, completed=96) as bar:
        for _ in range(84):
            bar.advance(1)
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("cycle 2/3: generate + verify: resumed at 96/180")
    assert "97/180" in lines[1]
    assert "180/180 (100%)" in lines[-1] and lines[-1].endswith(" - done")


def test_plain_bar_without_a_resume_is_unchanged() -> None:
    stream = io.StringIO()
    with Progress("plain", stream=stream, every_s=1e9).task("x", total=3) as bar:
        bar.advance(3)
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("x: started (3)") and "3/3 (100%)" in lines[-1]


def test_rich_bar_starts_at_completed_and_its_speed_counts_only_new_steps() -> None:
    progress = Progress("rich", stream=io.StringIO())
    with progress.task("verify", total=180, completed=96) as bar:
        task = progress._rich.tasks[0]
        assert task.completed == 96
        bar.advance(4)
        assert task.completed == 100
        assert sum(sample.completed for sample in task._progress) == 4


def test_completed_outside_the_total_is_refused() -> None:
    with pytest.raises(ValueError, match="completed=181"):
        with Progress("plain", stream=io.StringIO()).task("x", total=180, completed=181):
            pass


def test_a_status_shows_after_the_count_plain_and_rich() -> None:
    stream = io.StringIO()
    with Progress("plain", stream=stream, every_s=0.0).task("verify", total=4) as bar:
        bar.advance(1, status="1 passed")
        bar.advance(1)  # no status given: the last one stays
    lines = stream.getvalue().splitlines()
    assert "verify: 1/4 (25%), 1 passed in" in lines[1]
    assert "verify: 2/4 (50%), 1 passed in" in lines[2]
    progress = Progress("rich", stream=io.StringIO())
    with progress.task("verify", total=4) as bar:
        bar.advance(2, status="2 passed")
        task = progress._rich.tasks[0]
        assert task.completed == 2 and task.fields["status"] == "2 passed"

"""#14: the metrics plot shows the training loss, and series with equal values stay visible."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from halo_forge.metrics import CycleMetrics, _figure, plot  # noqa: E402

# pass rate == compile rate == mean reward in every cycle: before, only one line showed.
ROWS = [CycleMetrics(cycle=c, pass_rate=v, compile_rate=v, mean_reward=v, eval_pass_at_1=v,
                     run_rate=v, train_loss=loss)
        for c, v, loss in ((1, 0.3, 1.8), (2, 0.45, 1.2), (3, 0.5, 0.9))]


@pytest.fixture
def figure():
    fig = _figure(ROWS, plt)
    yield fig
    plt.close(fig)


def _lines(fig):
    return [line for ax in fig.axes for line in ax.get_lines()]


def test_training_loss_is_plotted_on_its_own_axis(figure):
    loss = [line for line in _lines(figure) if line.get_label() == "training loss"]
    assert len(loss) == 1
    assert list(loss[0].get_ydata()) == [1.8, 1.2, 0.9]  # a loss above 1 is not clipped away
    assert loss[0].axes.get_ylim()[1] >= 1.8


def test_identical_series_are_drawn_distinguishably_and_all_in_the_legend(figure):
    lines = _lines(figure)
    labels = [line.get_label() for line in lines]
    assert {"pass rate", "compile rate", "mean reward", "held-out pass@1", "ran, no tests",
            "training loss"} <= set(labels)
    looks = {(line.get_marker(), str(line.get_linestyle()), line.get_markersize()) for line in lines}
    assert len(looks) == len(lines)
    legend = figure.axes[0].get_legend()
    assert legend is not None
    assert {t.get_text() for t in legend.get_texts()} == set(labels)


def test_rows_without_loss_plot_without_the_loss_axis(tmp_path):
    rows = [CycleMetrics(cycle=1, pass_rate=0.2)]
    fig = _figure(rows, plt)
    try:
        assert len(fig.axes) == 1 and "training loss" not in [x.get_label() for x in _lines(fig)]
    finally:
        plt.close(fig)
    assert plot(rows, tmp_path / "m.png") and (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"

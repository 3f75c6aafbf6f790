"""What a plot drew, for tests: the figures code saves and the lines on them (instead of a PNG's file size)."""

from __future__ import annotations

import pytest


@pytest.fixture
def saved_figures(monkeypatch):
    """The matplotlib figures the code under test saves, in order, so a plot test can check what was drawn
    (lines, their data, scales, labels) instead of the size of a PNG."""
    from matplotlib.figure import Figure

    figures, save = [], Figure.savefig

    def recording(self, *args, **kwargs):
        figures.append(self)
        return save(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording)
    return figures


def drawn_lines(figure) -> dict[str, tuple[list[float], list[float]]]:
    """label -> (x data, y data) of the labelled lines on a saved figure's first axes."""
    (ax, *_) = figure.axes
    return {
        line.get_label(): (list(line.get_xdata()), list(line.get_ydata()))
        for line in ax.get_lines()
        if not line.get_label().startswith("_")
    }

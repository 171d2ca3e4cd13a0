"""A matplotlib Figure that notebooks show without pyplot.

``TransferResult.plot`` builds its figure with ``matplotlib.figure.Figure`` rather than pyplot so
that the user's backend and pyplot's current figure stay untouched. IPython, though, knows how to
draw a bare Figure only after pyplot set up its inline backend; without it a notebook prints
``<Figure size 600x350 with 1 Axes>``. ``_repr_png_`` renders the figure itself (Agg, into
memory), so it shows as an image either way.
"""

from __future__ import annotations

import io

from matplotlib.figure import Figure


class NotebookFigure(Figure):
    """A ``matplotlib.figure.Figure`` that renders itself as PNG for IPython and Jupyter."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()

"""Attention heatmaps with token labels: one map, or a grid of heads.

Rows are queries (who looks), columns are keys (who is looked at); each row of
weights sums to one. Used from chapter 04 on.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Optional, Sequence

import torch
from torch import Tensor

from ._checks import positive_int

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from numpy import float64
    from numpy.typing import NDArray

__all__ = ["plot_attention", "plot_attention_heads"]

# A torch.Tensor, a NumPy array or nested lists of numbers.
ArrayLike = Any


def _as_matrix(weights: ArrayLike, name: str, ndim: int) -> NDArray[float64]:
    import numpy as np

    if isinstance(weights, Tensor):
        array = weights.detach().to("cpu", torch.float64).numpy()
    else:
        array = np.asarray(weights, dtype=np.float64)
    if array.ndim != ndim:
        expected = "(T, S)" if ndim == 2 else "(H, T, S)"
        raise ValueError(f"{name} must have shape {expected} (got shape {tuple(array.shape)})")
    return array


def _check_labels(labels: Optional[Sequence[str]], size: int, name: str) -> None:
    if labels is not None and len(labels) != size:
        raise ValueError(f"{name} must have one label per position: {size} (got {len(labels)})")


def plot_attention(
    weights: ArrayLike,
    query_labels: Optional[Sequence[str]] = None,
    key_labels: Optional[Sequence[str]] = None,
    ax: Optional["Axes"] = None,
    title: Optional[str] = None,
    annotate: Optional[bool] = None,
    cmap: str = "viridis",
    colorbar: bool = True,
    vmax: Optional[float] = None,
) -> "Axes":
    """Draw one attention map.

    Args:
        weights: attention weights, one row per query.
        query_labels: a label per row (the queries' tokens).
        key_labels: a label per column (the keys' tokens).
        ax: the axes to draw on (a new figure when ``None``).
        title: the axes' title.
        annotate: write each weight in its cell (default: when the map is at most 12x12).
        cmap: matplotlib colormap.
        colorbar: draw a colour bar.
        vmax: top of the colour scale (default: the largest weight).

    Shapes:
        weights: ``(T, S)``.

    Returns:
        The matplotlib axes.
    """
    import matplotlib.pyplot as plt

    w = _as_matrix(weights, "weights", 2)
    T, S = w.shape
    _check_labels(query_labels, T, "query_labels")
    _check_labels(key_labels, S, "key_labels")
    if ax is None:
        _, ax = plt.subplots(figsize=(max(3.0, 0.45 * S + 1.5), max(2.5, 0.4 * T + 1.0)))
    top = vmax if vmax is not None else max(float(w.max()), 1e-12)
    image = ax.imshow(w, cmap=cmap, vmin=0.0, vmax=top, aspect="auto")
    ax.set_xticks(range(S))
    ax.set_yticks(range(T))
    ax.set_xticklabels([str(t) for t in key_labels] if key_labels is not None else [str(j) for j in range(S)],
                       rotation=90 if key_labels is not None else 0)
    ax.set_yticklabels([str(t) for t in query_labels] if query_labels is not None else [str(i) for i in range(T)])
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    if title:
        ax.set_title(title)
    if annotate is None:
        annotate = T <= 12 and S <= 12
    if annotate:
        for i in range(T):
            for j in range(S):
                ax.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if w[i, j] > 0.6 * top else "white")
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return ax


def plot_attention_heads(
    weights: ArrayLike,
    query_labels: Optional[Sequence[str]] = None,
    key_labels: Optional[Sequence[str]] = None,
    ncols: Optional[int] = None,
    titles: Optional[Sequence[str]] = None,
    cmap: str = "viridis",
    panel_size: float = 2.6,
) -> "Figure":
    """Draw one attention map per head in a grid, sharing one colour scale.

    Args:
        weights: per-head attention weights (for one example).
        query_labels: a label per row.
        key_labels: a label per column.
        ncols: columns in the grid (default: up to 4).
        titles: one title per head (default ``head 0``, ``head 1``, ...).
        cmap: matplotlib colormap.
        panel_size: size of each panel in inches.

    Shapes:
        weights: ``(H, T, S)``.

    Returns:
        The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    w = _as_matrix(weights, "weights", 3)
    H = w.shape[0]
    if titles is not None and len(titles) != H:
        raise ValueError(f"titles must have one entry per head: {H} (got {len(titles)})")
    ncols = min(H, 4) if ncols is None else ncols
    positive_int("ncols", ncols)
    nrows = math.ceil(H / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols + 1.0, panel_size * nrows), squeeze=False)
    vmax = max(float(w.max()), 1e-12)
    for h, ax in enumerate(axes.flat):
        if h >= H:
            ax.axis("off")
            continue
        plot_attention(w[h], query_labels, key_labels, ax=ax, title=titles[h] if titles else f"head {h}",
                       annotate=False, cmap=cmap, colorbar=False, vmax=vmax)
        if h % ncols:
            ax.set_ylabel("")
        if h < H - ncols:
            ax.set_xlabel("")
    fig.colorbar(axes.flat[0].images[0], ax=list(axes.flat), fraction=0.02, pad=0.02)
    return fig

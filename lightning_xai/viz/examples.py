"""Grids of examples (images or feature vectors) with captions, as image arrays.

Used to show the most self-influential training examples, the proponents and opponents of a
test example, or the nearest neighbours of a latent code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from lightning_xai.utilities.validation import check_positive_int

__all__ = ["example_grid", "influence_grid"]

ArrayLike = torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray]


def _as_images(examples: ArrayLike) -> np.ndarray:
    """``(N, H, W)`` or ``(N, H, W, 3)`` floats in [0, 1] from images or feature vectors."""
    if isinstance(examples, (list, tuple)):
        examples = np.stack(
            [np.asarray(e.detach().cpu() if torch.is_tensor(e) else e) for e in examples]
        )
    if torch.is_tensor(examples):
        examples = examples.detach().cpu().numpy()
    array = np.asarray(examples, dtype=np.float64)
    if array.ndim == 4 and array.shape[1] in (1, 3):  # (N, C, H, W)
        array = array[:, 0] if array.shape[1] == 1 else array.transpose(0, 2, 3, 1)
    elif array.ndim == 2:  # (N, F) feature vectors: one strip each
        array = array[:, None, :]
    elif array.ndim != 3:
        raise ValueError(
            "`images` must be (N, C, H, W) with C in (1, 3), (N, H, W) or (N, F); got shape "
            f"{tuple(array.shape)}."
        )
    if array.size and (array.min() < 0.0 or array.max() > 1.0):  # rescale each example to [0, 1]
        axes = tuple(range(1, array.ndim))
        low, high = array.min(axis=axes, keepdims=True), array.max(axis=axes, keepdims=True)
        array = (array - low) / np.where(high > low, high - low, 1.0)
    return array


def example_grid(
    images: ArrayLike,
    captions: Sequence[str] | None = None,
    *,
    ncols: int = 8,
    title: str | None = None,
    highlight: Sequence[bool] | torch.Tensor | None = None,
    cell_size: float = 1.3,
    cmap: str = "gray",
    highlight_color: str = "red",
) -> np.ndarray:
    """Draw examples in a grid, each with an optional caption; returns an ``HxWx3`` uint8 array.

    Args:
        images: ``(N, C, H, W)`` (C = 1 or 3), ``(N, H, W)``, or ``(N, F)`` feature vectors
            (drawn as strips). Values outside [0, 1] are rescaled per example.
        captions: one short caption per example (e.g. ``"#12 y=3 p=8 s=0.41"``).
        ncols: examples per row.
        title: figure title.
        highlight: examples to frame in ``highlight_color`` (e.g. known mislabeled ones).
        cell_size: inches per cell.
        cmap: colormap of single-channel examples.
        highlight_color: frame colour of highlighted examples.

    Example:
        >>> grid = example_grid(torch.rand(5, 1, 8, 8), [f"#{i}" for i in range(5)], ncols=3)
        >>> grid.dtype, grid.ndim, grid.shape[-1]
        (dtype('uint8'), 3, 3)
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    array = _as_images(images)
    n = len(array)
    if captions is not None and len(captions) != n:
        raise ValueError(
            f"`captions` has {len(captions)} entries for {n} images; give one per image."
        )
    check_positive_int("ncols", ncols)
    marks = [False] * n if highlight is None else [bool(h) for h in highlight]
    if len(marks) != n:
        raise ValueError(
            f"`highlight` has {len(marks)} entries for {n} images; give one per image."
        )
    cols = max(1, min(ncols, n))
    rows = max(1, -(-n // cols))
    fig = Figure(
        figsize=(cols * cell_size, rows * (cell_size + 0.25) + (0.4 if title else 0.0)), dpi=80
    )
    FigureCanvasAgg(fig)
    for i in range(rows * cols):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        ax.imshow(
            array[i],
            cmap=cmap,
            vmin=0.0,
            vmax=1.0,
            aspect="auto" if array[i].shape[0] == 1 else "equal",
        )
        if captions is not None:
            ax.set_title(captions[i], fontsize=7)
        for spine in ax.spines.values():
            spine.set_color(highlight_color if marks[i] else "0.7")
            spine.set_linewidth(2.5 if marks[i] else 0.5)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def influence_grid(
    probes: ArrayLike,
    proponents: ArrayLike,
    opponents: ArrayLike,
    probe_captions: Sequence[str] | None = None,
    proponent_captions: Sequence[Sequence[str]] | None = None,
    opponent_captions: Sequence[Sequence[str]] | None = None,
    *,
    title: str | None = None,
) -> np.ndarray:
    """One row per probe example: the probe (framed), its ``k`` proponents, then ``k`` opponents.

    Args:
        probes: ``M`` examples, as for :func:`example_grid`.
        proponents: ``(M, k, ...)`` examples, strongest first.
        opponents: ``(M, k, ...)`` examples, strongest first.
        probe_captions: ``M`` captions.
        proponent_captions: ``M`` lists of ``k`` captions.
        opponent_captions: ``M`` lists of ``k`` captions.
        title: figure title.

    Example:
        >>> img = influence_grid(torch.rand(2, 1, 8, 8), torch.rand(2, 3, 1, 8, 8), torch.rand(2, 3, 1, 8, 8))
        >>> img.ndim
        3
    """
    probe_arr = _as_images(probes)
    pro = [_as_images(p) for p in proponents]
    opp = [_as_images(o) for o in opponents]
    m = len(probe_arr)
    if len(pro) != m or len(opp) != m:
        raise ValueError(
            f"Got {m} probes but {len(pro)} proponent rows and {len(opp)} opponent rows."
        )
    k = len(pro[0]) if m else 0
    if any(len(r) != k for r in pro + opp):
        raise ValueError("Every probe needs the same number k of proponents and opponents.")
    cells, captions, marks = [], [], []
    for i in range(m):
        cells += [probe_arr[i], *pro[i], *opp[i]]
        captions += [probe_captions[i] if probe_captions else "probe"]
        captions += (
            list(proponent_captions[i]) if proponent_captions else [f"+{j + 1}" for j in range(k)]
        )
        captions += (
            list(opponent_captions[i]) if opponent_captions else [f"-{j + 1}" for j in range(k)]
        )
        marks += [True] + [False] * (2 * k)
    shapes = {c.shape for c in cells}
    if len(shapes) != 1:
        raise ValueError(
            f"Probes, proponents and opponents must share one shape; got {sorted(shapes)}."
        )
    return example_grid(
        np.stack(cells),
        captions,
        ncols=1 + 2 * k,
        title=title,
        highlight=marks,
        highlight_color="tab:blue",
    )

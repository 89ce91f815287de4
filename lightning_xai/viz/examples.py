"""Grids of examples with captions, as image arrays: images (grey or colour, any height and
width), 1-D signals (small line plots), tabular rows (small bar charts) and token sequences
(text tiles).

Used to show the most self-influential training examples, the proponents and opponents of a
test example, or the nearest neighbours of a latent code.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

from lightning_xai.utilities.validation import check_positive_int

__all__ = ["KINDS", "example_grid", "example_kind", "influence_grid"]

ArrayLike = torch.Tensor | np.ndarray | Sequence[torch.Tensor | np.ndarray]
Kind = Literal["auto", "image", "signal", "tabular", "tokens"]
Vocabulary = Sequence[str] | Mapping[int, str] | None
Highlight = bool | str | None

#: The kinds of examples a grid can draw.
KINDS: tuple[str, ...] = ("image", "signal", "tabular", "tokens")


def _as_list(examples: ArrayLike) -> list[np.ndarray]:
    """One numpy array per example (integer dtypes kept, for token ids)."""
    if torch.is_tensor(examples):
        return [e.numpy() for e in examples.detach().cpu()]
    if isinstance(examples, np.ndarray):
        return list(examples)
    return [np.asarray(e.detach().cpu() if torch.is_tensor(e) else e) for e in examples]


def example_kind(example: torch.Tensor | np.ndarray) -> str:
    """The kind of one example, from its dtype and shape.

    Integer ``(L,)``: ``"tokens"``; ``(F,)``: ``"tabular"``; ``(C, T)`` with a few channels
    (at most 4) and more steps than 4 per channel: ``"signal"``; ``(H, W)``, ``(C, H, W)``:
    ``"image"``.

    Example:
        >>> example_kind(torch.rand(3, 12, 10)), example_kind(torch.rand(2, 24))
        ('image', 'signal')
        >>> example_kind(torch.rand(5)), example_kind(torch.tensor([3, 7, 0]))
        ('tabular', 'tokens')
    """
    array = np.asarray(example.detach().cpu() if torch.is_tensor(example) else example)
    integer = np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_
    if array.ndim == 1:
        return "tokens" if integer else "tabular"
    if array.ndim == 2 and array.shape[0] <= 4 and array.shape[1] >= 4 * array.shape[0]:
        return "signal"
    if array.ndim in (2, 3):
        return "image"
    raise ValueError(
        f"Cannot draw an example of shape {tuple(array.shape)}: give images (C, H, W) or (H, W), "
        "signals (C, T), tabular rows (F,) or token ids (L,), or set `kind=`."
    )


def _unit(array: np.ndarray) -> np.ndarray:
    """Floats in [0, 1]; rescaled per example when outside."""
    array = array.astype(np.float64)
    if array.size and (array.min() < 0.0 or array.max() > 1.0):
        low, high = array.min(), array.max()
        array = (array - low) / (high - low if high > low else 1.0)
    return array


def _image(array: np.ndarray) -> np.ndarray:
    """``(H, W)`` grey or ``(H, W, 3)`` colour in [0, 1]."""
    if array.ndim == 3:
        if array.shape[0] == 3:
            array = array.transpose(1, 2, 0)
        elif array.shape[0] == 1:
            array = array[0]
        elif array.shape[-1] == 3:
            pass  # channels last already
        else:  # other channel counts: their mean, in grey
            array = array.mean(0)
    return _unit(array)


def _words(ids: np.ndarray, vocabulary: Vocabulary) -> str:
    ids = [int(i) for i in np.asarray(ids).reshape(-1)]
    while len(ids) > 1 and ids[-1] == 0:  # trailing padding
        ids.pop()

    def word(i: int) -> str:
        if isinstance(vocabulary, Mapping):
            return str(vocabulary.get(i, i))
        if vocabulary is not None and 0 <= i < len(vocabulary):
            return str(vocabulary[i])
        return str(i)

    return " ".join(word(i) for i in ids)


def _draw(
    ax: Any,
    array: np.ndarray,
    kind: str,
    *,
    cmap: str,
    vocabulary: Vocabulary,
    feature_names: Sequence[str] | None,
) -> None:
    if kind == "image":
        img = _image(array)
        ax.imshow(img, cmap=cmap if img.ndim == 2 else None, vmin=0.0, vmax=1.0)
    elif kind == "signal":
        series = array.reshape(-1, array.shape[-1]) if array.ndim > 1 else array[None]
        for channel in series:
            ax.plot(np.arange(len(channel)), channel, linewidth=0.8)
        ax.set_xlim(0, series.shape[1] - 1)
    elif kind == "tabular":
        values = array.reshape(-1).astype(np.float64)
        colours = ["tab:blue" if v >= 0 else "tab:red" for v in values]
        ax.bar(np.arange(len(values)), values, color=colours, width=0.8)
        ax.axhline(0.0, color="0.5", linewidth=0.5)
        if feature_names is not None:
            ax.set_xticks(np.arange(len(values)))
            ax.set_xticklabels(list(feature_names)[: len(values)], rotation=90, fontsize=5)
    elif kind == "tokens":
        text = textwrap.fill(_words(array, vocabulary), width=16, max_lines=6, placeholder=" …")
        ax.text(0.04, 0.96, text, ha="left", va="top", fontsize=6, family="monospace")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    else:  # pragma: no cover - checked by the callers
        raise ValueError(f"unknown kind {kind!r}")


def _frame(mark: Highlight, default: str) -> str | None:
    if mark is None or mark is False:
        return None
    return default if mark is True else str(mark)


def example_grid(
    images: ArrayLike,
    captions: Sequence[str] | None = None,
    *,
    ncols: int = 8,
    title: str | None = None,
    highlight: Sequence[Highlight] | torch.Tensor | None = None,
    cell_size: float = 1.3,
    cmap: str = "gray",
    highlight_color: str = "red",
    kind: Kind = "auto",
    vocabulary: Vocabulary = None,
    feature_names: Sequence[str] | None = None,
    legend: Mapping[str, str] | None = None,
) -> np.ndarray:
    """Draw examples in a grid, each with an optional caption; returns an ``HxWx3`` uint8 array.

    Args:
        images: the examples, a tensor/array ``(N, ...)`` or a list of them: images
            ``(C, H, W)`` (C = 3 in colour, other C in grey) or ``(H, W)``; signals ``(C, T)``
            drawn as small line plots; tabular rows ``(F,)`` as small bar charts; integer token
            ids ``(L,)`` as text tiles (trailing ``0`` padding dropped). Image values outside
            [0, 1] are rescaled per example.
        captions: one short caption per example (e.g. ``"#12\\nlabel 3 · pred 8 (0.91)"``).
        ncols: examples per row.
        title: figure title.
        highlight: per example, ``True`` (frame in ``highlight_color``), a colour name, or
            ``False``/``None`` (thin grey frame).
        cell_size: inches per cell.
        cmap: colormap of grey images.
        highlight_color: frame colour of examples highlighted with ``True``.
        kind: ``"auto"`` (from the first example's dtype and shape, see :func:`example_kind`),
            or one of :data:`KINDS` for every example.
        vocabulary: token strings by id (a list or a dict) for ``"tokens"``.
        feature_names: bar labels for ``"tabular"``.
        legend: what the frame colours mean, ``{"known flipped label": "red"}``; drawn under
            the grid.

    Example:
        >>> grid = example_grid(torch.rand(5, 3, 8, 6), [f"#{i}" for i in range(5)], ncols=3,
        ...                     highlight=[True, False, "tab:orange", None, False],
        ...                     legend={"flipped": "red", "misclassified": "tab:orange"})
        >>> grid.dtype, grid.ndim, grid.shape[-1]
        (dtype('uint8'), 3, 3)
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    arrays = _as_list(images)
    n = len(arrays)
    if captions is not None and len(captions) != n:
        raise ValueError(
            f"`captions` has {len(captions)} entries for {n} examples; give one per example."
        )
    check_positive_int("ncols", ncols)
    if kind != "auto" and kind not in KINDS:
        raise ValueError(f"`kind` must be 'auto' or one of {KINDS}, got {kind!r}.")
    if highlight is None:
        marks: list[Highlight] = [None] * n
    elif torch.is_tensor(highlight):
        marks = [bool(h) for h in highlight.tolist()]
    else:
        marks = [h if isinstance(h, str) or h is None else bool(h) for h in highlight]
    if len(marks) != n:
        raise ValueError(
            f"`highlight` has {len(marks)} entries for {n} examples; give one per example."
        )
    drawn = kind if kind != "auto" else (example_kind(arrays[0]) if n else "image")
    cols = max(1, min(ncols, n))
    rows = max(1, -(-n // cols))
    lines = max([c.count("\n") + 1 for c in captions or []] or [0])
    # fixed cells (inches): caption band over a square plot box, so captions never overlap
    box = cell_size * 0.86
    ticks = 0.35 if drawn == "tabular" and feature_names is not None else 0.0
    band = 0.12 * lines + 0.06
    cell_h = box + band + ticks + 0.08
    top = 0.35 if title else 0.05
    bottom = 0.3 if legend else 0.05
    width, height = cols * cell_size + 0.1, rows * cell_h + top + bottom
    fig = Figure(figsize=(width, height), dpi=80)
    FigureCanvasAgg(fig)
    for i in range(n):
        r, c = divmod(i, cols)
        left = 0.05 + c * cell_size + (cell_size - box) / 2
        low = height - top - (r + 1) * cell_h + ticks + 0.04
        ax = fig.add_axes((left / width, low / height, box / width, box / height))
        ax.set_xticks([])
        ax.set_yticks([])
        _draw(
            ax,
            arrays[i],
            drawn,
            cmap=cmap,
            vocabulary=vocabulary,
            feature_names=feature_names,
        )
        if drawn != "tabular" or feature_names is None:
            ax.set_xticks([])
        ax.set_yticks([])
        if captions is not None:
            ax.set_title(captions[i], fontsize=6, pad=2)
        colour = _frame(marks[i], highlight_color)
        for spine in ax.spines.values():
            spine.set_color(colour or "0.7")
            spine.set_linewidth(2.5 if colour else 0.5)
    if title:
        fig.suptitle(title, fontsize=9, y=1.0 - 0.08 / height, va="top")
    if legend:
        handles = [
            Patch(facecolor="none", edgecolor=colour, linewidth=2, label=meaning)
            for meaning, colour in legend.items()
        ]
        fig.legend(
            handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False
        )
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def influence_grid(
    probes: ArrayLike,
    proponents: ArrayLike | Sequence[ArrayLike],
    opponents: ArrayLike | Sequence[ArrayLike],
    probe_captions: Sequence[str] | None = None,
    proponent_captions: Sequence[Sequence[str]] | None = None,
    opponent_captions: Sequence[Sequence[str]] | None = None,
    *,
    title: str | None = None,
    highlight: Sequence[Sequence[Highlight]] | None = None,
    legend: Mapping[str, str] | None = None,
    kind: Kind = "auto",
    vocabulary: Vocabulary = None,
    feature_names: Sequence[str] | None = None,
) -> np.ndarray:
    """One row per probe example: the probe (framed in blue), its ``k`` proponents, then ``k``
    opponents.

    Args:
        probes: ``M`` examples, as for :func:`example_grid`.
        proponents: ``(M, k, ...)`` examples (or ``M`` lists of ``k``), strongest first.
        opponents: ``(M, k, ...)`` examples (or ``M`` lists of ``k``), strongest first.
        probe_captions: ``M`` captions.
        proponent_captions: ``M`` lists of ``k`` captions.
        opponent_captions: ``M`` lists of ``k`` captions.
        title: figure title.
        highlight: ``M`` lists of ``2k`` frame marks for the proponents then opponents (as for
            :func:`example_grid`).
        legend: what the frame colours mean; the probe's blue frame is always explained.
        kind: see :func:`example_grid`.
        vocabulary: token strings by id, for token examples.
        feature_names: bar labels, for tabular examples.

    Example:
        >>> img = influence_grid(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 3, 8, 8), torch.rand(2, 3, 3, 8, 8))
        >>> img.ndim
        3
    """
    probe_arr = _as_list(probes)
    pro = [_as_list(p) for p in proponents]
    opp = [_as_list(o) for o in opponents]
    m = len(probe_arr)
    if len(pro) != m or len(opp) != m:
        raise ValueError(
            f"Got {m} probes but {len(pro)} proponent rows and {len(opp)} opponent rows; give "
            "one row of each per probe."
        )
    k = len(pro[0]) if m else 0
    if any(len(r) != k for r in pro + opp):
        raise ValueError("Every probe needs the same number k of proponents and opponents.")
    if highlight is not None and (len(highlight) != m or any(len(r) != 2 * k for r in highlight)):
        raise ValueError(f"`highlight` needs {m} rows of {2 * k} marks (proponents, opponents).")
    cells: list[np.ndarray] = []
    captions: list[str] = []
    marks: list[Highlight] = []
    for i in range(m):
        cells += [probe_arr[i], *pro[i], *opp[i]]
        captions += [probe_captions[i] if probe_captions else "probe"]
        captions += (
            list(proponent_captions[i]) if proponent_captions else [f"+{j + 1}" for j in range(k)]
        )
        captions += (
            list(opponent_captions[i]) if opponent_captions else [f"-{j + 1}" for j in range(k)]
        )
        marks += ["tab:blue", *(highlight[i] if highlight is not None else [None] * (2 * k))]
    return example_grid(
        cells,
        captions,
        ncols=1 + 2 * k,
        title=title,
        highlight=marks,
        kind=kind,
        vocabulary=vocabulary,
        feature_names=feature_names,
        legend={"probe example": "tab:blue", **(legend or {})},
    )

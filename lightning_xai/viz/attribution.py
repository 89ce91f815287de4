"""Pictures of attributions that explain themselves: a title (method, stage, epoch, step), a
caption under each tile in words (``label 3 · pred 3 (0.98) · target 3``), and a legend that
states the colour scale, its range and whether it is per tile or shared.

* images (1 or 3 channels, any height and width): each tile is the input next to the input
  with its signed heatmap overlaid; RGB stays in colour; grids wrap to fit a TensorBoard card
  (at most ``max_cols`` tiles per row, at most ``max_width`` pixels wide);
* 1-D signals ``(N, C, T)``: lines coloured by attribution over time;
* tabular features: signed bars of the mean attribution, with the feature names;
* token ids: see :mod:`lightning_xai.viz.tokens`.

Every picture uses one diverging colour scale: blue lowers the explained score, white is no
effect, red raises it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import torch
from matplotlib import colormaps

__all__ = [
    "CMAP",
    "SCALES",
    "annotate",
    "attribution_bar_chart",
    "attribution_grid",
    "colour_limits",
    "scale_description",
    "signal_chart",
]

#: The signed colormap of every attribution picture: blue negative, white 0, red positive.
CMAP = "bwr"
Scale = Literal["tile", "shared"]
#: ``"tile"``: each tile (example) is coloured on its own range, ± its largest absolute
#: attribution, so the structure of every example shows; ``"shared"``: one range for every
#: tile, so magnitudes compare across examples.
SCALES: tuple[str, ...] = ("tile", "shared")

_SIGN_WORDS = "blue: lowers the explained score · white: no effect · red: raises it"


def _numpy(values: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


@lru_cache(maxsize=8)
def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


@lru_cache(maxsize=4096)
def _text_width(text: str, size: int) -> int:
    return int(np.ceil(_font(size).getlength(text)))


def _check_scale(scale: str) -> None:
    if scale not in SCALES:
        raise ValueError(
            f"`scale={scale!r}` is not supported; use 'tile' (each tile on its own range) or "
            "'shared' (one range for every tile)."
        )


def _check_finite(name: str, values: np.ndarray) -> None:
    if not np.isfinite(values).all():
        bad = np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(axis=1))
        raise ValueError(
            f"`{name}` holds NaN or inf for examples {bad[:8].tolist()}; a picture of them would "
            "be meaningless. Skip them (AttributionResult.non_finite() tells) or fix the model."
        )


def colour_limits(maps: np.ndarray | torch.Tensor, scale: Scale = "tile") -> np.ndarray:
    """The colour range of each example: ``±limit[n]`` maps to full blue/red.

    ``"tile"``: each example's largest absolute value; ``"shared"``: the largest over all.

    Example:
        >>> colour_limits(np.array([[1.0, -3.0], [0.5, 0.0]])).tolist()
        [3.0, 0.5]
        >>> colour_limits(np.array([[1.0, -3.0], [0.5, 0.0]]), "shared").tolist()
        [3.0, 3.0]
    """
    _check_scale(scale)
    values = _numpy(maps)
    limits = np.abs(values.reshape(len(values), -1)).max(axis=1) if values.size else np.zeros(0)
    if scale == "shared" and limits.size:
        limits = np.full_like(limits, limits.max())
    return limits


def scale_description(limits: np.ndarray | Sequence[float], scale: Scale = "tile") -> str:
    """One sentence stating the colour scale and its range, as the legends print it.

    Example:
        >>> scale_description([0.5, 2.0], "tile")
        'per-tile scale: each tile spans ± its own largest |attribution| (0.5 to 2 across tiles)'
        >>> scale_description([2.0, 2.0], "shared")
        'shared scale: one range, -2 to +2, for every tile'
    """
    _check_scale(scale)
    values = np.asarray(limits, dtype=np.float64)
    if values.size == 0:
        return "no attributions"
    if scale == "shared":
        top = float(values.max())
        return f"shared scale: one range, {-top:.3g} to +{top:.3g}, for every tile"
    return (
        "per-tile scale: each tile spans ± its own largest |attribution| "
        f"({float(values.min()):.3g} to {float(values.max()):.3g} across tiles)"
    )


def _wrap(text: str, width: int, size: int, separator: str = " ") -> list[str]:
    """Greedy wrapping of ``text`` at ``separator`` into lines at most ``width`` pixels."""
    pieces = text.split(separator)
    lines: list[str] = []
    for piece in pieces:
        candidate = f"{lines[-1]}{separator}{piece}" if lines else piece
        if lines and _text_width(candidate, size) <= width:
            lines[-1] = candidate
        else:
            lines.append(piece)
    return lines


def _as_rgb(images: np.ndarray) -> np.ndarray:
    """``(N, C, H, W)`` -> ``(N, H, W, 3)`` in [0, 1], each image rescaled to its own range
    (3 channels in colour, others as the grey mean of their channels)."""
    if images.shape[1] == 3:
        images = np.moveaxis(images, 1, -1)
    else:
        images = np.repeat(images.mean(axis=1)[..., None], 3, axis=-1)
    flat = images.reshape(len(images), -1)
    lo = flat.min(axis=1).reshape(-1, 1, 1, 1)
    span = (flat.max(axis=1) - flat.min(axis=1)).reshape(-1, 1, 1, 1)
    return np.divide(images - lo, span, out=np.zeros_like(images), where=span > 0)


def attribution_grid(
    inputs: np.ndarray | torch.Tensor,
    heatmaps: np.ndarray | torch.Tensor,
    captions: Sequence[str] | None = None,
    *,
    title: str | None = None,
    scale: Scale = "tile",
    max_width: int = 1000,
    max_cols: int = 8,
    ncols: int | None = None,
    cmap: str = CMAP,
    alpha: float = 0.8,
    zoom: int | None = None,
    pad: int = 4,
    legend: bool = True,
) -> np.ndarray:
    """A titled grid of captioned tiles, one per example, with a colour legend.

    Each tile shows the input (RGB in colour, other channel counts in grey) and, to its
    right, a muted copy of the input with the signed heatmap overlaid where the attribution
    is strong (blue negative, red positive). The legend under the grid states what the
    colours mean, their range, and whether the scale is per tile (the default: each tile
    spans ± its own largest absolute attribution, so every example's structure shows) or
    shared (one range for all tiles, so magnitudes compare).

    Rows wrap so that the picture fits a TensorBoard card: at most ``max_cols`` tiles per
    row and at most ``max_width`` pixels wide (tiles of large images are shrunk to fit).

    Args:
        inputs: images ``(N, C, H, W)`` or ``(N, H, W)``.
        heatmaps: one map per example ``(N, H, W)`` (e.g.
            :meth:`~lightning_xai.attribution.AttributionResult.heatmaps`, where layer
            attributions such as Grad-CAM are already upsampled to the input size).
        captions: one caption per tile, pieces separated by ``" · "`` (wrapped there), e.g.
            ``"label 3 · pred 3 (0.98) · target 3"``.
        title: the line above the grid, e.g. ``"integrated_gradients · fit · epoch 4 · step
            170"``.
        scale: ``"tile"`` or ``"shared"`` colour scaling.
        max_width: the widest the picture may be, in pixels.
        max_cols: the most tiles per row.
        ncols: tiles per row (default: as many as fit, rows balanced).
        cmap: a diverging matplotlib colormap name.
        alpha: opacity of the strongest attributions.
        zoom: integer upscaling of each pixel (default: images at least 64 px).
        pad: white pixels around tiles.
        legend: draw the colour legend.

    Returns:
        An ``(H', W', 3)`` ``uint8`` image.

    Raises:
        ValueError: for shapes that do not match, non-finite heatmaps, or a bad ``scale``.

    Example:
        >>> grid = attribution_grid(torch.rand(5, 1, 8, 8), torch.randn(5, 8, 8),
        ...                         [f"label {i} · pred {i} (0.9) · target {i}" for i in range(5)],
        ...                         title="saliency · fit · epoch 0 · step 4")
        >>> grid.dtype.name, grid.shape[1] <= 1000
        ('uint8', True)
    """
    from PIL import Image, ImageDraw

    _check_scale(scale)
    images = _numpy(inputs)
    maps = _numpy(heatmaps)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or maps.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(
            f"`inputs` must be (N, C, H, W) images and `heatmaps` (N, H, W) maps of the same "
            f"size, got {tuple(images.shape)} and {tuple(maps.shape)}."
        )
    n, _, height, width = images.shape
    if n == 0:
        raise ValueError("`inputs` is empty: there is no example to draw.")
    if captions is not None and len(captions) != n:
        raise ValueError(f"`captions` has {len(captions)} entries for {n} examples; give one each.")
    for name, value in (("max_width", max_width), ("max_cols", max_cols)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    if ncols is not None and (isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1):
        raise ValueError(f"`ncols` must be a positive integer or None, got {ncols!r}.")
    _check_finite("heatmaps", maps)
    _check_finite("inputs", images)
    limits = colour_limits(maps, scale)
    normed = np.divide(
        maps, limits.reshape(n, 1, 1), out=np.zeros_like(maps), where=limits.reshape(n, 1, 1) > 0
    )
    rgb = _as_rgb(images)
    colours = colormaps[cmap]((normed + 1) / 2)[..., :3]
    weight = alpha * np.abs(normed)[..., None]
    overlay = (1 - weight) * (0.25 + 0.5 * rgb) + weight * colours  # muted input under colour
    if zoom is None:
        zoom = max(1, -(-64 // max(height, width)))
    gap = max(2, zoom)
    tiles = np.concatenate(
        [
            rgb.repeat(zoom, axis=1).repeat(zoom, axis=2),
            np.ones((n, height * zoom, gap, 3)),
            overlay.repeat(zoom, axis=1).repeat(zoom, axis=2),
        ],
        axis=2,
    )
    tiles = (np.clip(tiles, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    tile_h, tile_w = tiles.shape[1:3]
    pictures = [Image.fromarray(t) for t in tiles]
    room = max_width - 2 * pad
    if tile_w > room:  # large images: shrink each tile to the card
        factor = room / tile_w
        size = (room, max(1, round(tile_h * factor)))
        pictures = [p.resize(size, Image.Resampling.BILINEAR) for p in pictures]
        tile_w, tile_h = size
    size = 10
    line_h = 13
    slot_w = max(tile_w, 96)
    wrapped = [_wrap(c, slot_w, size, " · ") if c else [] for c in (captions or [""] * n)]
    caption_h = max(len(lines) for lines in wrapped) * line_h + (3 if captions else 0)
    if ncols is None:
        fit = max(1, (max_width - pad) // (slot_w + pad))
        cols = min(max_cols, n, fit)
        rows = -(-n // cols)
        cols = -(-n // rows)  # balanced rows
    else:
        cols = min(ncols, n)
        rows = -(-n // cols)
    body = Image.new(
        "RGB", (cols * (slot_w + pad) + pad, rows * (tile_h + caption_h + pad) + pad), "white"
    )
    draw = ImageDraw.Draw(body)
    font = _font(size)
    for i, picture in enumerate(pictures):
        r, c = divmod(i, cols)
        left, top = pad + c * (slot_w + pad), pad + r * (tile_h + caption_h + pad)
        body.paste(picture, (left + (slot_w - tile_w) // 2, top))
        if wrapped[i]:  # one call per tile: text rendering is the costly part
            draw.multiline_text(
                (left, top + tile_h + 2), "\n".join(wrapped[i]), fill="black", font=font, spacing=3
            )
    if not legend and not title:
        return np.asarray(body)
    note = "each tile: the input (left) and its attributions overlaid (right)"
    return annotate(np.asarray(body), title, legend=legend, scale=scale, limits=limits, note=note)


def annotate(
    image: np.ndarray,
    title: str | None = None,
    *,
    legend: bool = True,
    scale: Scale = "tile",
    limits: np.ndarray | Sequence[float] | None = None,
    note: str | None = None,
) -> np.ndarray:
    """Add a title above and a colour legend below an ``(H, W, 3)`` ``uint8`` picture.

    The legend is a colour bar (blue, white, red) with its end values (``-max``/``+max`` for a
    per-tile scale, the numbers for a shared one), what the colours mean, a sentence stating
    the scale and its range (:func:`scale_description`), and an optional ``note`` (what a
    tile shows). Text wraps to the picture's width (at least 420 pixels).

    Example:
        >>> out = annotate(np.zeros((20, 200, 3), np.uint8), "integrated_gradients · fit · epoch 0",
        ...                limits=[0.5, 2.0])
        >>> out.shape[1], out.shape[0] > 60
        (420, True)
    """
    from PIL import Image, ImageDraw

    _check_scale(scale)
    height, width = image.shape[:2]
    canvas_w = max(width, 420)
    title_size, size, line_h = 12, 10, 13
    title_lines = _wrap(title, canvas_w - 8, title_size) if title else []
    top = 6 + 16 * len(title_lines) if title_lines else 0
    texts: list[str] = []
    values = np.asarray(limits if limits is not None else [], dtype=np.float64)
    if legend:
        texts = _wrap(_SIGN_WORDS, canvas_w - 8, size, " · ")
        if values.size:
            texts += _wrap(scale_description(values, scale), canvas_w - 8, size)
    if note:
        texts += _wrap(note, canvas_w - 8, size)
    bar_h = 22 if legend else 0
    bottom = (bar_h + line_h * len(texts) + 6) if (legend or note) else 0
    canvas = Image.new("RGB", (canvas_w, height + top + bottom), "white")
    canvas.paste(Image.fromarray(np.ascontiguousarray(image[..., :3])), (0, top))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(title_lines):
        draw.text((4, 3 + 16 * i), line, fill="black", font=_font(title_size))
    y = top + height + 4
    font = _font(size)
    if legend:
        if scale == "shared" and values.size:
            low, high = f"{-float(values.max()):.3g}", f"+{float(values.max()):.3g}"
        else:
            low, high = "-max", "+max"
        bar_w = 160
        x0 = 6 + _text_width(low, size)
        ramp = colormaps[CMAP](np.linspace(0, 1, bar_w))[:, :3]
        bar = (np.repeat(ramp[None], 10, axis=0) * 255).astype(np.uint8)
        draw.text((2, y), low, fill="black", font=font)
        canvas.paste(Image.fromarray(bar), (x0, y + 1))
        draw.rectangle((x0 - 1, y, x0 + bar_w, y + 11), outline=(120, 120, 120))
        draw.line((x0 + bar_w // 2, y, x0 + bar_w // 2, y + 11), fill=(120, 120, 120))
        draw.text((x0 + bar_w + 4, y), f"{high}   (0 at the centre line)", fill="black", font=font)
        y += bar_h
    if texts:
        draw.multiline_text((4, y), "\n".join(texts), fill="black", font=font, spacing=3)
    return np.asarray(canvas)


def attribution_bar_chart(
    attributions: np.ndarray | torch.Tensor,
    feature_names: Sequence[str] | None = None,
    top_k: int = 20,
    title: str | None = None,
) -> np.ndarray:
    """A horizontal bar chart of the mean signed attribution of each named feature.

    Features are ordered by their mean absolute attribution (the ``top_k`` largest shown, the
    most important on top); bars are red for a positive and blue for a negative mean, and the
    axis label says so.

    Args:
        attributions: ``(N, F)`` (or ``(N, ...)``, flattened) attributions.
        feature_names: one name per feature (default ``x0``, ``x1``, ...).
        top_k: show the ``top_k`` most important features.
        title: the chart title.

    Returns:
        An ``(H, W, 3)`` ``uint8`` image.

    Example:
        >>> img = attribution_bar_chart(torch.randn(8, 5), ["a", "b", "c", "d", "e"], top_k=3)
        >>> img.ndim, img.shape[-1], img.dtype.name
        (3, 3, 'uint8')
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    values = _numpy(attributions)
    values = values.reshape(values.shape[0], -1) if values.ndim > 1 else values[None]
    _check_finite("attributions", values)
    importance = np.abs(values).mean(axis=0)
    signed = values.mean(axis=0)
    names = list(feature_names) if feature_names is not None else None
    if names is None:
        names = [f"x{i}" for i in range(importance.size)]
    if len(names) != importance.size:
        raise ValueError(
            f"`feature_names` has {len(names)} names but the attributions have "
            f"{importance.size} features; give one name per feature."
        )
    if top_k < 1:
        raise ValueError(f"`top_k` must be >= 1, got {top_k}.")
    order = np.argsort(-importance, kind="stable")[:top_k][::-1]
    fig = Figure(figsize=(5.0, 0.9 + 0.28 * len(order)), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colors = np.where(signed[order] >= 0, "#c0392b", "#2e5cb8")
    ax.barh(np.arange(len(order)), signed[order], color=colors)
    ax.axvline(0.0, color="black", linewidth=0.6)
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5, symmetric=True))
    ax.tick_params(axis="x", labelsize=7)
    ax.set_yticks(np.arange(len(order)), [names[i] for i in order], fontsize=8)
    ax.set_xlabel(
        f"mean attribution over {len(values)} examples (red: raises the score, blue: lowers it)",
        fontsize=8,
    )
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def signal_chart(
    inputs: np.ndarray | torch.Tensor,
    heatmaps: np.ndarray | torch.Tensor,
    captions: Sequence[str] | None = None,
    *,
    scale: Scale = "tile",
    max_rows: int = 8,
    cmap: str = CMAP,
) -> np.ndarray:
    """1-D signals ``(N, C, T)`` as lines coloured by their attribution over time.

    Each example gets a row, captioned with ``captions[n]``; every channel is drawn as a line
    whose colour at step ``t`` is the attribution ``heatmaps[n, t]`` on the signed scale
    (blue negative, red positive), per row or shared (``scale``, see :data:`SCALES`). Add the
    title and legend with :func:`annotate`.

    Args:
        inputs: signals ``(N, C, T)`` (or ``(N, T)``).
        heatmaps: one attribution per step ``(N, T)``.
        captions: one caption per example.
        scale: ``"tile"`` (each row on its own range) or ``"shared"``.
        max_rows: at most this many examples are drawn.
        cmap: a diverging matplotlib colormap.

    Returns:
        An ``(H, W, 3)`` ``uint8`` image.

    Example:
        >>> img = signal_chart(torch.randn(3, 2, 24), torch.randn(3, 24), ["a", "b", "c"])
        >>> img.ndim, img.dtype.name
        (3, 'uint8')
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    x = _numpy(inputs)
    maps = _numpy(heatmaps)
    if x.ndim == 2:
        x = x[:, None]
    if x.ndim != 3 or maps.shape != (x.shape[0], x.shape[2]):
        raise ValueError(
            f"`inputs` must be signals (N, C, T) and `heatmaps` (N, T), got {tuple(x.shape)} "
            f"and {tuple(maps.shape)}."
        )
    if captions is not None and len(captions) != len(x):
        raise ValueError(
            f"`captions` has {len(captions)} entries for {len(x)} examples; give one each."
        )
    _check_finite("heatmaps", maps)
    limits = colour_limits(maps, scale)
    rows = min(len(x), max_rows)
    fig = Figure(figsize=(6.0, 0.4 + 1.0 * rows), dpi=80)
    canvas = FigureCanvasAgg(fig)
    steps = np.arange(x.shape[2])
    norm = Normalize(-1.0, 1.0)
    for i in range(rows):
        ax = fig.add_subplot(rows, 1, i + 1)
        scaled = maps[i] / limits[i] if limits[i] > 0 else maps[i]
        colour = (scaled[:-1] + scaled[1:]) / 2
        for channel in x[i]:
            points = np.stack([steps, channel], axis=1)
            segments = np.stack([points[:-1], points[1:]], axis=1)
            lines = LineCollection(segments, cmap=cmap, norm=norm, linewidth=2)
            lines.set_array(colour)
            ax.add_collection(lines)
        ax.set_xlim(0, max(1, len(steps) - 1))
        low, high = float(x[i].min()), float(x[i].max())
        margin = 0.05 * (high - low) or 1.0
        ax.set_ylim(low - margin, high + margin)
        ax.tick_params(labelsize=6)
        if captions is not None:
            ax.set_title(captions[i], fontsize=7, loc="left", pad=2)
    fig.tight_layout(pad=0.4)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()

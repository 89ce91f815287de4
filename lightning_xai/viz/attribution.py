"""Pictures of attributions: heatmap overlays for images (1 or 3 channels, any size), lines
coloured by attribution for 1-D signals, signed bar charts for tabular features, and a caption
with a colour legend for each."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib import colormaps

__all__ = ["annotate", "attribution_bar_chart", "attribution_grid", "signal_chart"]

#: The signed colormap of every attribution picture: blue negative, white 0, red positive.
CMAP = "bwr"


def _numpy(values: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def _as_rgb(images: np.ndarray) -> np.ndarray:
    """``(N, C, H, W)`` -> ``(N, H, W, 3)`` in [0, 1], each image rescaled to its own range."""
    if images.shape[1] == 3:
        images = np.moveaxis(images, 1, -1)
    else:
        images = np.repeat(images[:, 0, :, :, None], 3, axis=-1)
    flat = images.reshape(len(images), -1)
    lo = flat.min(axis=1).reshape(-1, 1, 1, 1)
    span = (flat.max(axis=1) - flat.min(axis=1)).reshape(-1, 1, 1, 1)
    return np.divide(images - lo, span, out=np.zeros_like(images), where=span > 0)


def attribution_grid(
    inputs: np.ndarray | torch.Tensor,
    heatmaps: np.ndarray | torch.Tensor,
    ncols: int = 4,
    cmap: str = "bwr",
    alpha: float = 0.8,
    scale: int | None = None,
    pad: int = 2,
) -> np.ndarray:
    """A grid of tiles, one per example: the input, then the input with its heatmap overlaid.

    The heatmap uses a signed colormap centred on 0 (by default blue = negative, red =
    positive), scaled per example by its largest absolute value, and is blended over a muted
    copy of the grayscale (or RGB) input where the attribution is strong.

    Args:
        inputs: images ``(N, C, H, W)`` or ``(N, H, W)``.
        heatmaps: one map per example ``(N, H, W)`` (e.g.
            :meth:`~lightning_xai.attribution.AttributionResult.heatmaps`).
        ncols: tiles per row.
        cmap: a diverging matplotlib colormap name.
        alpha: opacity of the strongest attributions.
        scale: integer upscaling of each pixel (default: so that images are at least 64 px).
        pad: white pixels between tiles.

    Returns:
        An ``(H', W', 3)`` ``uint8`` image.

    Example:
        >>> grid = attribution_grid(torch.rand(5, 1, 8, 8), torch.randn(5, 8, 8), ncols=3, scale=2)
        >>> grid.shape
        (38, 110, 3)
    """
    images = _numpy(inputs)
    maps = _numpy(heatmaps)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or maps.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(
            f"`inputs` must be (N, C, H, W) images and `heatmaps` (N, H, W) maps of the same "
            f"size, got {tuple(images.shape)} and {tuple(maps.shape)}."
        )
    if ncols < 1:
        raise ValueError(f"`ncols` must be >= 1, got {ncols}.")
    n, _, height, width = images.shape
    if scale is None:
        scale = max(1, -(-64 // max(height, width)))
    limit = np.abs(maps).reshape(n, -1).max(axis=1).reshape(n, 1, 1)
    normed = np.divide(maps, limit, out=np.zeros_like(maps), where=limit > 0)
    rgb = _as_rgb(images)
    colors = colormaps[cmap]((normed + 1) / 2)[..., :3]
    weight = alpha * np.abs(normed)[..., None]
    overlay = (1 - weight) * (0.2 + 0.5 * rgb) + weight * colors  # muted input under colour
    tiles = np.concatenate([rgb, np.ones((n, height, 1, 3)), overlay], axis=2)
    tiles = np.clip(tiles, 0.0, 1.0).astype(np.float32)
    tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    tile_h, tile_w = tiles.shape[1:3]
    rows = -(-n // ncols)
    cols = min(ncols, n)
    grid = np.ones((rows * (tile_h + pad) + pad, cols * (tile_w + pad) + pad, 3), np.float32)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, ncols)
        top, left = pad + r * (tile_h + pad), pad + c * (tile_w + pad)
        grid[top : top + tile_h, left : left + tile_w] = tile
    return (grid * 255 + 0.5).astype(np.uint8)


def attribution_bar_chart(
    attributions: np.ndarray | torch.Tensor,
    feature_names: Sequence[str] | None = None,
    top_k: int = 20,
    title: str | None = None,
) -> np.ndarray:
    """A horizontal bar chart of the mean signed attribution of each feature.

    Features are ordered by their mean absolute attribution (the ``top_k`` largest shown, the
    most important on top); bars are red for a positive and blue for a negative mean.

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

    values = _numpy(attributions)
    values = values.reshape(values.shape[0], -1) if values.ndim > 1 else values[None]
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
    ax.set_yticks(np.arange(len(order)), [names[i] for i in order], fontsize=8)
    ax.set_xlabel("mean attribution (red: raises the score, blue: lowers it)", fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def signal_chart(
    inputs: np.ndarray | torch.Tensor,
    heatmaps: np.ndarray | torch.Tensor,
    title: str | None = None,
    max_rows: int = 8,
    cmap: str = CMAP,
) -> np.ndarray:
    """1-D signals ``(N, C, T)`` as lines coloured by their attribution over time.

    Each example gets a row; every channel is drawn as a line whose colour at step ``t`` is
    the attribution ``heatmaps[n, t]`` on a signed scale (blue negative, red positive) scaled
    by the example's largest absolute value.

    Args:
        inputs: signals ``(N, C, T)`` (or ``(N, T)``).
        heatmaps: one attribution per step ``(N, T)``.
        title: the figure title.
        max_rows: at most this many examples are drawn.
        cmap: a diverging matplotlib colormap.

    Returns:
        An ``(H, W, 3)`` ``uint8`` image.

    Example:
        >>> img = signal_chart(torch.randn(3, 2, 24), torch.randn(3, 24), title="ig")
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
    rows = min(len(x), max_rows)
    fig = Figure(figsize=(6.0, 0.6 + 0.9 * rows), dpi=80)
    canvas = FigureCanvasAgg(fig)
    steps = np.arange(x.shape[2])
    norm = Normalize(-1.0, 1.0)
    for i in range(rows):
        ax = fig.add_subplot(rows, 1, i + 1)
        limit = np.abs(maps[i]).max()
        scaled = maps[i] / limit if limit > 0 else maps[i]
        colour = (scaled[:-1] + scaled[1:]) / 2
        for channel in x[i]:
            points = np.stack([steps, channel], axis=1)
            segments = np.stack([points[:-1], points[1:]], axis=1)
            lines = LineCollection(segments, cmap=cmap, norm=norm, linewidth=2)
            lines.set_array(colour)
            ax.add_collection(lines)
        ax.set_xlim(0, max(1, len(steps) - 1))
        low, high = float(x[i].min()), float(x[i].max())
        pad = 0.05 * (high - low) or 1.0
        ax.set_ylim(low - pad, high + pad)
        ax.tick_params(labelsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def annotate(image: np.ndarray, caption: str | None = None, legend: bool = True) -> np.ndarray:
    """Add a caption strip above and a colour legend (blue negative, white 0, red positive)
    below an ``(H, W, 3)`` ``uint8`` picture.

    Example:
        >>> out = annotate(np.zeros((20, 200, 3), np.uint8), "integrated_gradients, fit, epoch 0")
        >>> out.shape[1], out.shape[0] > 20
        (200, True)
    """
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default()
    height, width = image.shape[:2]
    top = 16 if caption else 0
    bottom = 18 if legend else 0
    canvas = Image.new("RGB", (max(width, 160), height + top + bottom), "white")
    canvas.paste(Image.fromarray(np.ascontiguousarray(image[..., :3])), (0, top))
    draw = ImageDraw.Draw(canvas)
    if caption:
        draw.text((3, 2), caption, fill="black", font=font)
    if legend:
        bar_w = min(120, canvas.width - 80)
        ramp = colormaps[CMAP](np.linspace(0, 1, bar_w))[:, :3]
        bar = (np.repeat(ramp[None], 8, axis=0) * 255).astype(np.uint8)
        y = top + height + 5
        draw.text((3, y - 2), "neg", fill="black", font=font)
        canvas.paste(Image.fromarray(bar), (30, y))
        draw.text((34 + bar_w, y - 2), "pos", fill="black", font=font)
    return np.asarray(canvas)

"""Pictures of attributions: heatmap overlays for images, bar charts for features."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib import colormaps

__all__ = ["attribution_bar_chart", "attribution_grid"]


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
    """A horizontal bar chart of the mean absolute attribution of each feature.

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
    fig = Figure(figsize=(5.0, 0.6 + 0.28 * len(order)), dpi=100)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.barh(np.arange(len(order)), importance[order], color="#c0392b")
    ax.set_yticks(np.arange(len(order)), [names[i] for i in order], fontsize=8)
    ax.set_xlabel("mean |attribution|")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_xai.viz import attribution_bar_chart, attribution_grid


def test_grid_layout_and_signed_overlay() -> None:
    images = torch.full((3, 1, 4, 4), 0.5)
    images[:, :, 0, 0] = 0.0  # some contrast, so the image is not rescaled to black
    heat = torch.zeros(3, 4, 4)
    heat[0, 2, 2] = 1.0  # positive -> red
    heat[1, 2, 2] = -1.0  # negative -> blue
    grid = attribution_grid(images, heat, ncols=2, scale=1, pad=1)
    assert grid.dtype == np.uint8
    grid = grid / 255.0
    tile_w = 4 + 1 + 4
    assert grid.shape == (2 * (4 + 1) + 1, 2 * (tile_w + 1) + 1, 3)
    assert grid.min() >= 0 and grid.max() <= 1

    def overlay_pixel(i: int, r: int, c: int) -> np.ndarray:
        row, col = divmod(i, 2)
        top, left = 1 + row * 5, 1 + col * (tile_w + 1) + 5
        return grid[top + r, left + c]

    red, blue = overlay_pixel(0, 2, 2), overlay_pixel(1, 2, 2)
    assert red[0] > red[2] and blue[2] > blue[0]
    # zero attribution leaves the (grey) input untouched
    untouched = overlay_pixel(2, 2, 2)
    assert np.allclose(untouched, untouched[0])
    # the input tile is the plain input
    assert np.allclose(grid[1 + 2, 1 + 2], 1.0)
    assert np.allclose(grid[1, 1], 0.0)  # the darkest input pixel


def test_grid_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        attribution_grid(torch.rand(2, 1, 8, 8), torch.rand(2, 4, 4))


def test_bar_chart_shows_top_features() -> None:
    attributions = torch.zeros(4, 30)
    attributions[:, 7] = -5.0
    img = attribution_bar_chart(attributions, [f"f{i}" for i in range(30)], top_k=5, title="t")
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    # bars are drawn in a strong red that the background does not have
    red = (img[..., 0] > 150) & (img[..., 1] < 100)
    assert red.any()
    with pytest.raises(ValueError, match="one name per feature"):
        attribution_bar_chart(attributions, ["a", "b"])

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_xai.viz import attribution_bar_chart, attribution_grid
from lightning_xai.viz.attribution import annotate, signal_chart
from lightning_xai.viz.tokens import token_image, token_markdown, token_strings


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


def test_bar_chart_shows_top_features_signed() -> None:
    attributions = torch.zeros(4, 30)
    attributions[:, 7] = -5.0
    img = attribution_bar_chart(attributions, [f"f{i}" for i in range(30)], top_k=5, title="t")
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    blue = (img[..., 2] > 150) & (img[..., 0] < 100)
    red = (img[..., 0] > 150) & (img[..., 1] < 100)
    assert blue.any() and not red.any()  # a negative mean is drawn in blue
    flipped = attribution_bar_chart(-attributions, [f"f{i}" for i in range(30)], top_k=5)
    assert ((flipped[..., 0] > 150) & (flipped[..., 1] < 100)).any()
    with pytest.raises(ValueError, match="one name per feature"):
        attribution_bar_chart(attributions, ["a", "b"])


def test_grid_takes_rgb_and_non_square_images() -> None:
    grid = attribution_grid(torch.rand(3, 3, 6, 10), torch.randn(3, 6, 10), ncols=3, scale=1)
    assert grid.shape == (6 + 4, 3 * (2 * 10 + 1 + 2) + 2, 3)


def test_signal_chart_colours_lines_by_attribution() -> None:
    x = torch.zeros(2, 1, 20)
    heat = torch.zeros(2, 20)
    heat[:, :10] = 1.0  # first half red
    heat[:, 10:] = -1.0  # second half blue
    img = signal_chart(x, heat)
    red = (img[..., 0] > 200) & (img[..., 2] < 80)
    blue = (img[..., 2] > 200) & (img[..., 0] < 80)
    assert red.any() and blue.any()
    with pytest.raises(ValueError, match=r"\(N, T\)"):
        signal_chart(x, torch.zeros(2, 5))


def test_annotate_adds_caption_and_legend() -> None:
    image = np.full((10, 200, 3), 255, np.uint8)
    out = annotate(image, "integrated_gradients | fit | epoch 3")
    assert out.shape == (10 + 16 + 18, 200, 3)
    assert (out[:16] < 128).any()  # caption text
    legend = out[-18:]
    assert ((legend[..., 2] > 200) & (legend[..., 0] < 80)).any()  # blue end
    assert ((legend[..., 0] > 200) & (legend[..., 2] < 80)).any()  # red end


def test_tokens_as_markdown_spans_and_picture() -> None:
    ids = torch.tensor([[1, 2, 0], [2, 1, 1]])
    tokens = token_strings(ids, ["<pad>", "good", "film"])
    assert tokens == [["good", "film", "<pad>"], ["film", "good", "good"]]
    assert token_strings(ids, lambda row: [f"t{i}" for i in row])[0] == ["t1", "t2", "t0"]
    scores = torch.tensor([[1.0, -1.0, 0.0], [0.5, 0.0, 0.0]])
    mask = ids != 0
    md = token_markdown(tokens, scores, mask, labels=["target 1", "target 0"], title="ig")
    assert "<pad>" not in md and "&lt;pad&gt;" not in md  # padding left out
    assert 'background-color:#ff0000" title="1"' in md  # strongest positive: full red
    assert 'background-color:#0000ff" title="-1"' in md  # strongest negative: full blue
    img = token_image(tokens, scores, mask, width=300)
    assert img.shape[1] == 300 and ((img[..., 0] > 200) & (img[..., 2] < 80)).any()

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_xai.viz import attribution_bar_chart, attribution_grid
from lightning_xai.viz.attribution import annotate, colour_limits, scale_description, signal_chart
from lightning_xai.viz.tokens import token_image, token_markdown, token_strings


def _overlay_pixel(grid: np.ndarray, top: int, left: int, tile: int, r: int, c: int) -> np.ndarray:
    return grid[top + r, left + tile + 2 + c] / 255.0


def test_grid_layout_and_signed_overlay() -> None:
    images = torch.full((3, 1, 4, 4), 0.5)
    images[:, :, 0, 0] = 0.0  # some contrast, so the image is not rescaled to black
    heat = torch.zeros(3, 4, 4)
    heat[0, 2, 2] = 1.0  # positive -> red
    heat[1, 2, 2] = -1.0  # negative -> blue
    grid = attribution_grid(images, heat, ncols=2, zoom=1, pad=1, legend=False)
    assert grid.dtype == np.uint8
    slot = 96  # tiles narrower than a caption slot are centred in it
    assert grid.shape == (2 * (4 + 1) + 1, 2 * (slot + 1) + 1, 3)
    left0 = 1 + (slot - (4 + 2 + 4)) // 2

    def tile_origin(i: int) -> tuple[int, int]:
        row, col = divmod(i, 2)
        return 1 + row * 5, left0 + col * (slot + 1)

    red = _overlay_pixel(grid, *tile_origin(0), 4, 2, 2)
    blue = _overlay_pixel(grid, *tile_origin(1), 4, 2, 2)
    assert red[0] > red[2] and blue[2] > blue[0]
    untouched = _overlay_pixel(grid, *tile_origin(2), 4, 2, 2)
    assert np.allclose(untouched, untouched[0])  # zero attribution leaves the grey input
    top, left = tile_origin(0)
    assert np.allclose(grid[top + 2, left + 2], 255)  # the input tile is the plain input
    assert np.allclose(grid[top, left], 0)  # its darkest pixel


def test_tile_and_shared_scales_differ_only_in_the_range() -> None:
    images = torch.full((2, 1, 4, 4), 0.5)
    heat = torch.zeros(2, 4, 4)
    heat[0, 1, 1], heat[1, 1, 1] = 4.0, 1.0  # example 1 is four times weaker
    kwargs = dict(ncols=2, zoom=1, pad=1, legend=False)
    tile = attribution_grid(images, heat, scale="tile", **kwargs).astype(int)
    shared = attribution_grid(images, heat, scale="shared", **kwargs).astype(int)
    left1 = 1 + (96 - 10) // 2 + 97
    # per tile both maxima are full red; shared, the weaker one is paler (more green)
    assert tile[1 + 1, left1 + 6 + 1, 1] < shared[1 + 1, left1 + 6 + 1, 1]
    assert np.array_equal(tile[:, :97], shared[:, :97])
    assert colour_limits(heat, "shared").tolist() == [4.0, 4.0]
    with pytest.raises(ValueError, match="scale='rows'.*'tile'.*'shared'"):
        attribution_grid(images, heat, scale="rows")


def test_captioned_grid_wraps_to_a_tensorboard_card() -> None:
    n = 16
    captions = [f"example {i} · label 3 · pred 3 (0.98) · target 3" for i in range(n)]
    grid = attribution_grid(torch.rand(n, 1, 8, 8), torch.randn(n, 8, 8), captions, title="t")
    assert grid.shape[1] <= 1000  # no horizontal scrollbar in a TensorBoard card
    # 16 tiles of 2 x 64 px (8 px apart): 7 would fit in 1000 px, rows are balanced to 6 + 6 + 4
    assert grid.shape[1] == 6 * (2 * 64 + 8 + 4) + 4
    big = attribution_grid(torch.rand(3, 3, 600, 500), torch.randn(3, 600, 500), max_width=1000)
    assert big.shape[1] <= 1000  # tiles of large images are shrunk to the card
    many = attribution_grid(torch.rand(20, 1, 2, 2), torch.randn(20, 2, 2), zoom=1)
    assert many.shape[1] <= 8 * (96 + 4) + 4  # at most 8 tiles per row


def test_non_finite_maps_are_refused_not_drawn() -> None:
    heat = torch.zeros(3, 4, 4)
    heat[1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"heatmaps.*NaN or inf for examples \[1\]"):
        attribution_grid(torch.rand(3, 1, 4, 4), heat)
    with pytest.raises(ValueError, match="NaN or inf"):
        attribution_bar_chart(torch.tensor([[float("inf"), 1.0]]))
    with pytest.raises(ValueError, match="sequences \\[0\\]"):
        token_image([["a", "b"]], torch.tensor([[float("nan"), 1.0]]))


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
    images = torch.zeros(3, 3, 6, 10)
    images[:, 0] = 1.0  # pure red inputs stay red
    grid = attribution_grid(images, torch.randn(3, 6, 10), ncols=3, zoom=1, pad=2, legend=False)
    assert grid.shape == (6 + 4, 3 * (96 + 2) + 2, 3)
    left = 2 + (96 - 22) // 2
    assert grid[2 + 3, left + 3].tolist() == [255, 0, 0]


def test_signal_chart_colours_lines_by_attribution() -> None:
    x = torch.zeros(2, 1, 20)
    heat = torch.zeros(2, 20)
    heat[:, :10] = 1.0  # first half red
    heat[:, 10:] = -1.0  # second half blue
    img = signal_chart(x, heat, ["example 0 · label 1", "example 1 · label 0"])
    red = (img[..., 0] > 200) & (img[..., 2] < 80)
    blue = (img[..., 2] > 200) & (img[..., 0] < 80)
    assert red.any() and blue.any()
    with pytest.raises(ValueError, match=r"\(N, T\)"):
        signal_chart(x, torch.zeros(2, 5))


def test_annotate_adds_title_and_a_legend_stating_the_scale() -> None:
    image = np.full((10, 500, 3), 255, np.uint8)
    out = annotate(image, "integrated_gradients · fit · epoch 3", limits=[0.5, 2.0])
    assert out.shape[1] == 500 and out.shape[0] > 10 + 16 + 22 + 2 * 13
    assert (out[:20] < 128).any()  # title text
    legend = out[10 + 22 :]
    assert ((legend[..., 2] > 200) & (legend[..., 0] < 80)).any()  # blue end
    assert ((legend[..., 0] > 200) & (legend[..., 2] < 80)).any()  # red end
    assert "per-tile" in scale_description([0.5, 2.0]) and "0.5 to 2" in scale_description([0.5, 2])
    assert "-2 to +2" in scale_description([2.0], "shared")
    narrow = annotate(np.zeros((5, 50, 3), np.uint8), "t")
    assert narrow.shape[1] == 420  # wide enough for the legend's words


def test_tokens_as_markdown_spans_and_picture() -> None:
    ids = torch.tensor([[1, 2, 0], [2, 1, 1]])
    tokens = token_strings(ids, ["<pad>", "good", "film"])
    assert tokens == [["good", "film", "<pad>"], ["film", "good", "good"]]
    assert token_strings(ids, lambda row: [f"t{i}" for i in row])[0] == ["t1", "t2", "t0"]
    scores = torch.tensor([[1.0, -1.0, 0.0], [0.5, 0.0, 0.0]])
    mask = ids != 0
    md = token_markdown(tokens, scores, mask, labels=["target 1", "target 0"], title="ig")
    assert "each line spans" in md and "target 1" in md
    shared = token_markdown(tokens, scores, mask, scale="shared")
    assert "-1 to +1" in shared and 'background-color:#ff7e7e" title="0.5"' in shared
    assert "<pad>" not in md and "&lt;pad&gt;" not in md  # padding left out
    assert 'background-color:#ff0000" title="1"' in md  # strongest positive: full red
    assert 'background-color:#0000ff" title="-1"' in md  # strongest negative: full blue
    img = token_image(tokens, scores, mask, width=300)
    assert img.shape[1] == 300 and ((img[..., 0] > 200) & (img[..., 2] < 80)).any()

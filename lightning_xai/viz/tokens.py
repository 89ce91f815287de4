"""Token attributions: each token on a background coloured by its attribution, as HTML-span
markdown (TensorBoard's text tab) and as a picture."""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps

__all__ = ["token_image", "token_markdown", "token_strings"]

_CMAP = "bwr"
_SCALES = ("tile", "shared")


def token_strings(
    ids: torch.Tensor, vocabulary: Sequence[str] | Callable[[list[int]], Any] | None = None
) -> list[list[str]]:
    """The token strings of ``ids`` ``(N, T)``: looked up in a sequence, converted by a callable
    (a tokenizer's ``convert_ids_to_tokens``), or the ids themselves.

    Example:
        >>> token_strings(torch.tensor([[2, 0]]), ["[PAD]", "a", "b"])
        [['b', '[PAD]']]
        >>> token_strings(torch.tensor([[7, 1]]))
        [['7', '1']]
    """
    rows = ids.detach().cpu().tolist()
    out = []
    for row in rows:
        if vocabulary is None:
            out.append([str(i) for i in row])
        elif callable(vocabulary):
            out.append([str(t) for t in vocabulary(list(row))])
        else:
            out.append([str(vocabulary[i]) if 0 <= i < len(vocabulary) else f"<{i}>" for i in row])
    return out


def _limits(scores: np.ndarray, keep: np.ndarray, scale: str) -> np.ndarray:
    """The colour range of each sequence over its real tokens: its own (``"tile"``) or the
    largest over all (``"shared"``)."""
    if scale not in _SCALES:
        raise ValueError(
            f"`scale={scale!r}` is not supported; use 'tile' (each sequence on its own range) "
            "or 'shared' (one range for every sequence)."
        )
    limits = np.where(keep, np.abs(scores), 0.0).max(axis=1) if scores.size else np.zeros(0)
    if scale == "shared" and limits.size:
        limits = np.full_like(limits, limits.max())
    return limits


def _colours(scores: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] per score, each row scaled by its ``limits`` entry."""
    limit = limits.reshape(-1, 1)
    normed = np.divide(scores, limit, out=np.zeros_like(scores), where=limit > 0)
    return colormaps[_CMAP]((np.clip(normed, -1, 1) + 1) / 2)[..., :3]


def _prepare(
    tokens: Sequence[Sequence[str]], scores: Any, mask: Any
) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(
        scores.detach().float().cpu().numpy() if isinstance(scores, torch.Tensor) else scores,
        dtype=np.float64,
    )
    if values.ndim != 2 or len(tokens) != len(values):
        raise ValueError(
            f"`scores` must be (N, T) with one row per token sequence, got shape "
            f"{tuple(values.shape)} for {len(tokens)} sequences."
        )
    if mask is None:
        keep = np.ones(values.shape, dtype=bool)
    else:
        keep = np.asarray(mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else mask)
        keep = keep.astype(bool)
    if not np.isfinite(values[keep]).all():
        bad = np.flatnonzero(~np.isfinite(np.where(keep, values, 0.0)).all(axis=1))
        raise ValueError(
            f"`scores` hold NaN or inf for sequences {bad[:8].tolist()}; a picture of them would "
            "be meaningless. Skip them (AttributionResult.non_finite() tells) or fix the model."
        )
    return values, keep


def token_markdown(
    tokens: Sequence[Sequence[str]],
    scores: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor | None = None,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    scale: str = "tile",
) -> str:
    """Markdown with one line per sequence, each token an HTML span on a background coloured by
    its attribution (blue negative, red positive); padding is left out.

    ``labels`` prefix each line (e.g. ``"label 1 · pred 1 (0.93) · target 1"``); ``scale`` is
    ``"tile"`` (each sequence on its own range, the default) or ``"shared"``, and the legend
    line states which, with the range. Hovering a token shows its attribution.

    Example:
        >>> md = token_markdown([["good", "film"]], torch.tensor([[1.0, -0.5]]))
        >>> "good" in md and "background-color" in md
        True
    """
    values, keep = _prepare(tokens, scores, mask)
    limits = _limits(values, keep, scale)
    colours = _colours(values, limits)
    lines = [f"**{html.escape(title)}**", ""] if title else []
    if scale == "shared":
        where = f"one range for every line, {-limits.max():.3g} to +{limits.max():.3g}"
    else:
        where = "each line spans ± its own largest |attribution|"
    lines.append(
        f"blue: lowers the explained score · white: no effect · red: raises it ({where}; "
        "hover a token for its value)"
    )
    lines.append("")
    for i, row in enumerate(tokens):
        spans = []
        for j, token in enumerate(row):
            if not keep[i, j]:
                continue
            r, g, b = (int(255 * c) for c in colours[i, j])
            spans.append(
                f'<span style="background-color:#{r:02x}{g:02x}{b:02x}" '
                f'title="{values[i, j]:.4g}">{html.escape(token)}</span>'
            )
        prefix = f"{html.escape(labels[i])}: " if labels is not None else ""
        lines.append(f"{i}. {prefix}" + " ".join(spans))
    return "\n".join(lines)


def token_image(
    tokens: Sequence[Sequence[str]],
    scores: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor | None = None,
    labels: Sequence[str] | None = None,
    width: int = 640,
    scale: str = "tile",
) -> np.ndarray:
    """The tokens of each sequence on boxes coloured by attribution, wrapped to ``width``
    pixels, one block per sequence under its caption (``labels``); padding is left out.

    ``scale``: ``"tile"`` (each sequence on its own range, the default) or ``"shared"``. Add a
    title and the colour legend with :func:`~lightning_xai.viz.attribution.annotate`.

    Returns:
        An ``(H, W, 3)`` ``uint8`` image.

    Example:
        >>> img = token_image([["good", "film"], ["bad", "[PAD]"]], torch.tensor([[1.0, -0.5], [0.3, 0.0]]),
        ...                   mask=torch.tensor([[1, 1], [1, 0]]))
        >>> img.shape[1], img.dtype.name
        (640, 'uint8')
    """
    from PIL import Image, ImageDraw, ImageFont

    values, keep = _prepare(tokens, scores, mask)
    colours = _colours(values, _limits(values, keep, scale))
    font = ImageFont.load_default()
    line_h, pad = 16, 4
    # lay out first to know the height
    placed: list[tuple[int, int, str, tuple[int, int, int] | None, int]] = []
    y = pad
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    for i, row in enumerate(tokens):
        caption = labels[i] if labels is not None else f"example {i}"
        placed.append((pad, y, caption, None, 0))
        x, y = pad + 10, y + line_h
        for j, token in enumerate(row):
            if not keep[i, j]:
                continue
            w = int(measure.textlength(token, font=font)) + 4
            if x + w > width - pad and x > pad + 20:
                x, y = pad + 10, y + line_h
            colour = tuple(int(255 * c) for c in colours[i, j])
            placed.append((x, y, token, colour, w))  # type: ignore[arg-type]
            x += w + 2
        y += line_h + pad
    image = Image.new("RGB", (width, y + pad), "white")
    draw = ImageDraw.Draw(image)
    for x, y0, text, colour, w in placed:
        if colour is not None:
            draw.rectangle((x, y0, x + w, y0 + line_h - 2), fill=colour)
        draw.text((x + 2, y0 + 1), text, fill="black", font=font)
    return np.asarray(image)

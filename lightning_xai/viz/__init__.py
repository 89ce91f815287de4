"""Report builders: heatmap grids, token and signal pictures, example grids, the run report."""

from lightning_xai.viz.attribution import (
    SCALES,
    annotate,
    attribution_bar_chart,
    attribution_grid,
    colour_limits,
    scale_description,
    signal_chart,
)
from lightning_xai.viz.examples import KINDS, example_grid, example_kind, influence_grid
from lightning_xai.viz.report import render_report, sparkline_svg, write_report
from lightning_xai.viz.tokens import token_image, token_markdown, token_strings

__all__: list[str] = [
    "KINDS",
    "SCALES",
    "annotate",
    "attribution_bar_chart",
    "attribution_grid",
    "colour_limits",
    "example_grid",
    "example_kind",
    "influence_grid",
    "render_report",
    "scale_description",
    "signal_chart",
    "sparkline_svg",
    "token_image",
    "token_markdown",
    "token_strings",
    "write_report",
]

"""viz."""

from lightning_xai.viz.attribution import attribution_bar_chart, attribution_grid
from lightning_xai.viz.examples import example_grid, influence_grid

__all__: list[str] = [
    "attribution_bar_chart",
    "attribution_grid",
    "example_grid",
    "influence_grid",
]

"""viz."""

from lightning_xai.viz.examples import example_grid, influence_grid

__all__: list[str] = [
    "example_grid",
    "influence_grid",
]

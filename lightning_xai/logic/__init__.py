"""logic."""

__all__: list[str] = []

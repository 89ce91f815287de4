"""attribution."""

__all__: list[str] = []

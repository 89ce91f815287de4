"""influence."""

__all__: list[str] = []

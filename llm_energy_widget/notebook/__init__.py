"""The only code that knows ipykernel internals: waiting in a cell, running notebooks, the cell
running now."""

__all__: list[str] = []

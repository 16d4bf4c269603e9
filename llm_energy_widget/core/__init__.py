"""The core model: typed records, labels and the energy attribution every view shares.

Only numpy and `power.energy`/`power.record` are imported here, so every consumer can use it.
"""

__all__: list[str] = []

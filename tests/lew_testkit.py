"""Old import path, kept for tests/profiling until it imports `support` (see support/)."""

from support.models import HostEvent, tiny_llama
from support.sources import ConstantSource

__all__ = ["ConstantSource", "HostEvent", "tiny_llama"]

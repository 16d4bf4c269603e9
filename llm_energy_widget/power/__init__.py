"""Power sources, the background sampler and the energy integral."""

from .base import Availability, PowerSource
from .energy import EnergyCurve, cumulative_trapezoid_j
from .record import RAILS, PowerReading, SourceSample
from .sampler import PowerSampler

__all__ = [
    "RAILS",
    "Availability",
    "EnergyCurve",
    "PowerReading",
    "PowerSampler",
    "PowerSource",
    "SourceSample",
    "cumulative_trapezoid_j",
]

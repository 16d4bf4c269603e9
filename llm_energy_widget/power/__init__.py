"""Power sources, the background sampler and the energy integral."""

from .base import Availability, PowerSource
from .energy import EnergyCurve, cumulative_trapezoid_j
from .estimate import EstimateSource
from .macmon import MacmonSource
from .nvml import NvmlSource
from .powermetrics import PowermetricsSource
from .rapl import RaplSource
from .record import RAILS, PowerReading, SourceSample
from .registry import SOURCES, explain_auto, get_source, list_sources
from .replay import ReplaySource
from .sampler import PowerSampler
from .streams import SkippedSampleWarning

__all__ = [
    "RAILS",
    "SOURCES",
    "Availability",
    "EnergyCurve",
    "EstimateSource",
    "MacmonSource",
    "NvmlSource",
    "PowerReading",
    "PowerSampler",
    "PowerSource",
    "PowermetricsSource",
    "RaplSource",
    "ReplaySource",
    "SkippedSampleWarning",
    "SourceSample",
    "cumulative_trapezoid_j",
    "explain_auto",
    "get_source",
    "list_sources",
]

"""One exception root, so callers can catch everything this package raises with one clause.

EnergyWidgetError
├── InvalidInputError (also ValueError)     bad arguments: the message says which and why
├── SourceUnavailableError                  a power source cannot be used here, and how to fix
├── SourceError                             a power source failed while sampling
│   └── MalformedSampleError                one sample of a stream could not be parsed
├── MissingDependencyError (also ImportError)  an optional package is needed (its install)
├── ModelLoadError                          a model or tokenizer could not be found or loaded
├── RunError                                a run could not start or failed
│   ├── ConcurrentRunError                  the model is already being profiled
│   └── RunCancelled                        raised in the generation thread to stop `generate`
└── StoreError                              the run store is unusable
    └── UnknownRunError (also KeyError)     no run with that id
"""

from __future__ import annotations

__all__ = [
    "ConcurrentRunError",
    "EnergyWidgetError",
    "InvalidInputError",
    "MalformedSampleError",
    "MissingDependencyError",
    "ModelLoadError",
    "RunCancelled",
    "RunError",
    "SourceError",
    "SourceUnavailableError",
    "StoreError",
    "UnknownRunError",
]


class EnergyWidgetError(Exception):
    """Root of every error raised on purpose by llm-energy-widget."""


class InvalidInputError(EnergyWidgetError, ValueError):
    """Bad arguments from the user: a specific message says which and why."""


class SourceUnavailableError(EnergyWidgetError):
    """A power source cannot be used here; the message says why and how to fix it."""


class SourceError(EnergyWidgetError):
    """A power source failed while sampling (the sampler stops and reports it)."""


class MalformedSampleError(SourceError):
    """One sample in a stream could not be parsed; streams skip it with a warning."""


class MissingDependencyError(EnergyWidgetError, ImportError):
    """An optional package is needed for this feature; the message names the install command."""


class ModelLoadError(EnergyWidgetError):
    """A model or tokenizer could not be found or loaded."""


class RunError(EnergyWidgetError):
    """A profiling run could not start or failed."""


class ConcurrentRunError(RunError):
    """A second run was started on a model that is already being profiled."""


class RunCancelled(RunError):
    """Raised inside the generation thread to stop `generate` when the user cancels."""


class StoreError(EnergyWidgetError):
    """The run store is unusable: not a database, corrupted, read-only, or from newer code."""


class UnknownRunError(StoreError, KeyError):
    """No run with that id in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "unknown run"

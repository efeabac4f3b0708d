"""Policy-optimisation algorithms, one file each: the equations in the docstring, the pure
functions that compute them, and an `Algorithm` (training.algorithms.base) that the loops drive.

Which algorithms exist, and their settings, is in the torch-free catalogue
(training.spec.algorithms); `engine_for` loads the class that a catalogue entry names.
"""

from __future__ import annotations

import importlib

from training.algorithms.base import Algorithm
from training.spec.algorithms import algorithm_spec


def engine_for(name: str) -> type[Algorithm]:
    """The Algorithm class of the registered algorithm `name`."""
    engine = algorithm_spec(name).engine
    if isinstance(engine, str):
        module, _, attribute = engine.partition(":")
        engine = getattr(importlib.import_module(module), attribute)
    return engine

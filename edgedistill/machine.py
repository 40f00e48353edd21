"""The machine record and CPU preset detection; they live in the torch-free core (edgedistill/edge/machine.py)
that every bundle carries. This module keeps `from edgedistill.machine import ...` working."""

from .edge.machine import (
    isa_features,  # noqa: F401
    )

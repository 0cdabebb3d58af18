"""Peerwatt core: units, slots, errors, chain connection and deployment loading shared by the
CLI, the oracle and the settlement packages."""

__version__ = "0.1.0"

"""The mutant catalog (catalog.py), how mutants are planted (planting.py), and the runner."""
from .catalog import CATALOG, Mutant, by_name
from .runner import run_catalog

__all__ = ["CATALOG", "Mutant", "by_name", "run_catalog"]

"""Pure-PyTorch references: the specification of every op, imported by tests and benchmarks."""
from tricks_ext.reference.weight_standardize import weight_standardize

__all__ = ["weight_standardize"]

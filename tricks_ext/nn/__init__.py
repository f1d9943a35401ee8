"""Modules built on tricks_ext.functional."""
from tricks_ext.nn.dropout import Dropout, ReZeroResidual

__all__ = ["Dropout", "ReZeroResidual"]

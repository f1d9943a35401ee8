"""Modules built on tricks_ext.functional."""
from tricks_ext.nn.dropout import Dropout, DropPath, ReZeroResidual

__all__ = ["Dropout", "DropPath", "ReZeroResidual"]

"""Modules built on tricks_ext.functional."""
from tricks_ext.nn.dropout import Dropout

__all__ = ["Dropout"]

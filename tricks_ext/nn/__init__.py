"""Modules built on tricks_ext.functional."""
from tricks_ext.nn.dropout import Dropout, DropPath, ReZeroResidual
from tricks_ext.nn.loss import SoftTargetCrossEntropy

__all__ = ["Dropout", "DropPath", "ReZeroResidual", "SoftTargetCrossEntropy"]

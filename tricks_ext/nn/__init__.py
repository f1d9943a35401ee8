"""Modules built on tricks_ext.functional."""
from tricks_ext.nn.dropout import Dropout, DropPath, ReZeroResidual
from tricks_ext.nn.loss import SoftTargetCrossEntropy
from tricks_ext.nn.norm import EvoNormS0, ScaledWSConv2d, WSConv2d, fold_weight_standardization

__all__ = ["Dropout", "DropPath", "ReZeroResidual", "SoftTargetCrossEntropy", "EvoNormS0", "WSConv2d",
           "ScaledWSConv2d", "fold_weight_standardization"]

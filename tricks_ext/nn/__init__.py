"""Modules built on tricks_ext.functional.

``WSConv2d``, ``ScaledWSConv2d`` and ``EvoNormS0`` take nn.Conv2d-style defaults; ``StdConv2d``,
``StdConv2dSame``, ``ScaledStdConv2d``, ``ScaledStdConv2dSame`` and ``EvoNorm2dS0`` take timm's
exact signatures and defaults (drop-in for ``timm.layers``)."""
from tricks_ext.nn.dropout import Dropout, DropPath, ReZeroResidual
from tricks_ext.nn.loss import SoftF1Loss, SoftTargetBCE, SoftTargetCrossEntropy
from tricks_ext.nn.norm import EvoNormS0, ScaledWSConv2d, WSConv2d, fold_weight_standardization
from tricks_ext.nn.timm_layers import EvoNorm2dS0, ScaledStdConv2d, ScaledStdConv2dSame, StdConv2d, StdConv2dSame

__all__ = ["Dropout", "DropPath", "ReZeroResidual", "SoftTargetCrossEntropy", "SoftTargetBCE", "SoftF1Loss", "EvoNormS0",
           "WSConv2d",
           "ScaledWSConv2d", "fold_weight_standardization", "EvoNorm2dS0", "StdConv2d", "StdConv2dSame",
           "ScaledStdConv2d", "ScaledStdConv2dSame"]

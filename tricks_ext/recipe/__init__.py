"""The training-loop tricks around the step, above the ops: LR schedules that write a device LR
(:class:`OneCycle`, :class:`FlatCos`, :class:`WarmupCosine`, :class:`WSD`), the plateau rule
(:class:`PlateauController`), SASA+'s LR drop for any optimizer (:class:`SASAController`),
on-device loss accumulation (:class:`LossMeter`), the LR range test (:func:`lr_range_test`,
which leaves model, optimizer and RNG as it found them), the critical LR (:func:`critical_lr`,
from :func:`top_curvature_eigenvalue`), Adam's horizon settings (:func:`adam_horizon`), LR and
weight decay for a new batch size (:func:`rescale_hparams`); for
imbalanced classes, balanced weights (:func:`class_weights`), the output bias at the prior
(:func:`init_output_bias`), the :class:`Oversampler` and :class:`BalancedSampler`; data echoing
(:class:`Echo`); AR and TAR (:func:`activation_regularization`,
:func:`temporal_activation_regularization`). They use only the public API of
``tricks_ext.optim`` and torch, and read nothing on the host inside a training loop (each read
that remains is named in its docstring)."""
from tricks_ext.recipe.curvature import (RescaledHparams, adam_horizon, critical_lr, rescale_hparams,
                                        top_curvature_eigenvalue)
from tricks_ext.recipe.echo import Echo
from tricks_ext.recipe.imbalance import class_weights, init_output_bias
from tricks_ext.recipe.lr_finder import LRRangeTest, lr_range_test
from tricks_ext.recipe.meter import LossMeter
from tricks_ext.recipe.plateau import PlateauController, fluctuation_reference
from tricks_ext.recipe.regularizers import activation_regularization, temporal_activation_regularization
from tricks_ext.recipe.samplers import BalancedSampler, Oversampler
from tricks_ext.recipe.sasa_controller import SASAController
from tricks_ext.recipe.schedules import WSD, FlatCos, OneCycle, WarmupCosine

__all__ = ["OneCycle", "FlatCos", "WarmupCosine", "WSD", "PlateauController", "fluctuation_reference",
           "LossMeter", "lr_range_test", "LRRangeTest", "SASAController", "critical_lr",
           "top_curvature_eigenvalue", "adam_horizon", "rescale_hparams", "RescaledHparams",
           "class_weights", "init_output_bias", "Oversampler", "BalancedSampler", "Echo",
           "activation_regularization", "temporal_activation_regularization"]

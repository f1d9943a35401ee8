"""The training-loop tricks around the step, above the ops: LR schedules that write a device LR
(:class:`OneCycle`, :class:`FlatCos`, :class:`WarmupCosine`, :class:`WSD`), the plateau rule
(:class:`PlateauController`) and on-device loss accumulation (:class:`LossMeter`). They use
only the public API of ``tricks_ext.optim`` and torch, and read nothing on the host inside a
training loop (each read that remains is named in its docstring)."""
from tricks_ext.recipe.meter import LossMeter
from tricks_ext.recipe.plateau import PlateauController, fluctuation_reference
from tricks_ext.recipe.schedules import WSD, FlatCos, OneCycle, WarmupCosine

__all__ = ["OneCycle", "FlatCos", "WarmupCosine", "WSD", "PlateauController", "fluctuation_reference",
           "LossMeter"]

"""Optimizers: Ranger (GC + RAdam + Lookahead) and FusedAdam/AdamW/RAdam with gc= and
lookahead_k= options; all share tricks_ext.optim._base.TricksOptimizer. ``create_optimizer``
builds one with timm's parameter groups. ``SASA`` is statopt's SASA+ (SGD with QHM momentum and an
LR drop decided by a statistical test) with its test on the device; ``SALSA`` adds statopt's smoothed
line search before it, decided on the device too."""
from tricks_ext.optim._base import TricksOptimizer
from tricks_ext.optim.factory import create_optimizer, param_groups_weight_decay
from tricks_ext.optim.optimizers import FusedAdam, FusedAdamW, FusedRAdam, Ranger
from tricks_ext.optim.salsa import SALSA
from tricks_ext.optim.sasa import SASA, StationarityTest

__all__ = ["TricksOptimizer", "FusedAdam", "FusedAdamW", "FusedRAdam", "Ranger", "SASA", "SALSA", "StationarityTest", "create_optimizer",
           "param_groups_weight_decay"]

"""Optimizers: Ranger (GC + RAdam + Lookahead) and FusedAdam/AdamW/RAdam with gc= and
lookahead_k= options; all share tricks_ext.optim._base.TricksOptimizer. ``create_optimizer``
builds one with timm's parameter groups."""
from tricks_ext.optim._base import TricksOptimizer
from tricks_ext.optim.factory import create_optimizer, param_groups_weight_decay
from tricks_ext.optim.optimizers import FusedAdam, FusedAdamW, FusedRAdam, Ranger

__all__ = ["TricksOptimizer", "FusedAdam", "FusedAdamW", "FusedRAdam", "Ranger", "create_optimizer",
           "param_groups_weight_decay"]

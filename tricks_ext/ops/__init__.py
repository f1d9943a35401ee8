"""Operator registrations; importing this package registers every op with torch.library and
with the backend registry."""
from tricks_ext.ops import (dropout, evonorm, mask_boxes, mixup, optim, sasa, soft_bce, soft_ce,  # noqa: F401
                            soft_f1, weight_standardize)

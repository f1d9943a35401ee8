"""Operator registrations; importing this package registers every op with torch.library and
with the backend registry."""
from tricks_ext.ops import (dropout, evonorm, mask_boxes, mixup, optim, soft_bce, soft_ce, soft_f1,  # noqa: F401
                            weight_standardize)

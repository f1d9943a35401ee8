"""Operator registrations; importing this package registers every op with torch.library and
with the backend registry."""
from tricks_ext.ops import dropout, mixup, optim, weight_standardize  # noqa: F401

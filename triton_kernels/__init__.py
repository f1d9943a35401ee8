"""Triton kernels and their host launchers (installed as ``tricks_ext.triton_kernels``).

Each module's public launchers have the exact signature of a ``tricks_ext::<op>`` schema (the
name too: ``weight_standardize_fwd``, ``mixup_apply_`` ...; tests/test_contract.py checks them)
and take and return torch tensors; kernels and helpers are private (``_``). On CPU tensors they
run only under ``TRITON_INTERPRET=1``, which must be set before these modules are imported.
"""

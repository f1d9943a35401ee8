"""Triton kernels and their host launchers (installed as ``tricks_ext.triton_kernels``).

Each module exposes launchers ``<op>_fwd`` / ``<op>_bwd`` taking and returning torch tensors;
the ``_<op>_*_kernel`` functions are private. On CPU tensors they run only under
``TRITON_INTERPRET=1``, which must be set before these modules are imported.
"""

"""Command line: ``python -m tricks_ext info``. The build and benchmark tools live beside the
package in a source checkout (make bench, make compile-check)."""
from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
from typing import List, Optional


def info() -> int:
    import torch

    import tricks_ext
    from tricks_ext import _backend

    triton_version = "not installed"
    if importlib.util.find_spec("triton") is not None:
        import triton
        triton_version = triton.__version__
    print(f"tricks_ext {tricks_ext.__version__}")
    print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), triton {triton_version}")
    print(f"extension: HAS_C={tricks_ext.HAS_C} HAS_CUDA_KERNELS={tricks_ext.HAS_CUDA_KERNELS}"
          + (f" ({tricks_ext.LOAD_ERROR})" if tricks_ext.LOAD_ERROR else ""))
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
        print(f"device: {torch.cuda.get_device_name(0)} (+ cpu)")
    else:
        print(f"device: cpu ({platform.processor() or platform.machine()}), no CUDA device")
    print(f"backend in force: {_backend.get_backend()}; TRITON_INTERPRET={'1' if _backend.triton_interpreting() else 'unset'}")
    print()
    header = f"{'op':24s} " + " ".join(f"{d.type + ':' + b:12s}" for d in devices for b in _backend.BACKENDS) + "  auto"
    print(header)
    for op in sorted(_backend.registered_ops()):
        cells = []
        for d in devices:
            for b in _backend.BACKENDS:
                cells.append(f"{'yes' if _backend.unavailable_reason(b, d, op) is None else '-':12s}")
        autos = ",".join(f"{d.type}->{_backend.resolve(op, d, 'auto')}" for d in devices)
        print(f"{op:24s} " + " ".join(cells) + "  " + autos)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tricks_ext",
                                     epilog="benchmarks: make bench; GPU compile without a GPU: make compile-check; predicted GPU speed: make gpu-model "
                                            "(from a source checkout)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("info", help="versions, device, and which backends each op can use here")
    parser.parse_args(argv)
    return info()


if __name__ == "__main__":
    sys.exit(main())

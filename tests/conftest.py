"""Test configuration: Triton's interpreter on CPU-only machines, seeding, the `gpu` marker.

TRITON_INTERPRET must be set before any Triton kernel is defined, so this runs before the
test modules import tricks_ext.
"""
import os
import tempfile

# A fresh inductor cache per run: its keys do not cover a rebuilt extension's fake kernels, so
# a graph compiled against an older build (another stats shape, say) would be served again.
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="tricks_ext_inductor_"))

import torch  # noqa: E402

# Under pytest-xdist (`make test` runs a worker per core) each worker keeps one intra-op thread:
# with torch's default of one per core in every worker, their OpenMP threads spin against each
# other (on 2 cores, 2 workers x 2 threads took 607 s, a single process 950 s beside other jobs). Tests that need
# parallel CPU tasks ask for them with the two_threads fixture.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

CUDA = torch.cuda.is_available()
if not CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device; skipped without one")


def pytest_runtest_setup(item):
    if item.get_closest_marker("gpu") is not None and not CUDA:
        pytest.skip("needs a CUDA device")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def two_threads():
    """At least two intra-op threads, so the CPU kernels split work into parallel tasks."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(2, before))
    yield torch.get_num_threads()
    torch.set_num_threads(before)

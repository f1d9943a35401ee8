"""The fuzz suite shares tests/helpers.py with the op tests. Each case's record (what it
computed, the backends passed over; tests/fuzz/test_fuzz.py, RECORDS) is put in its test
report here, for the summary tests/conftest.py prints and checks (that file is loaded where the
reports arrive, the xdist controller included; this one only where the tests run)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(autouse=True)
def _fuzz_records(request):
    from test_fuzz import RECORDS
    RECORDS.clear()
    yield
    request.node.user_properties.extend(("fuzz", dict(r)) for r in RECORDS)
    RECORDS.clear()

"""Test-wide settings.

Eight host devices let the sharding tests run a real 8-way mesh on a CPU-only machine; rank
promotion is an error so that silent broadcasting bugs surface. Both must be set before JAX is
imported anywhere, which is why they live at the top of conftest.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_NUMPY_RANK_PROMOTION", "raise")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pathlib  # noqa: E402

import pytest  # noqa: E402

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The real clips and sequences beside the checkout; skips the test when absent."""
    root = pathlib.Path(os.environ.get("JAXHEAD_SHARED_DATA", SHARED_DATA))
    if not root.is_dir():
        pytest.skip(f"real data folder {root} is absent (set JAXHEAD_SHARED_DATA)")
    return root

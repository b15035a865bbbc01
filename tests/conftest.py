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
import tempfile  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# Property tests explore the same examples on every run (CI failures reproduce locally).
settings.register_profile("jaxhead", derandomize=True, deadline=None)
settings.load_profile("jaxhead")

# A persistent compilation cache shared by this session's tests (and their subprocesses): stages
# compile the same train step again when a test resumes a run, and that should not cost twice.
_COMPILE_CACHE = os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="jaxhead-test-xla-cache-")
)
jax.config.update("jax_compilation_cache_dir", _COMPILE_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    """The real clips and sequences beside the checkout; skips the test when absent."""
    root = pathlib.Path(os.environ.get("JAXHEAD_SHARED_DATA", SHARED_DATA))
    if not root.is_dir():
        pytest.skip(f"real data folder {root} is absent (set JAXHEAD_SHARED_DATA)")
    return root

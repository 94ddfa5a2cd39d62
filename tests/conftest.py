"""Test configuration: every test runs in float64 (docs/math.md, "Identities the tests hold").

The tests compile many small programs once each; XLA's CPU back-end optimisations take most of that
time and buy nothing for networks of a few neurons, so they are turned down here (about 3x faster
compiles). Benchmarks and user code keep XLA's defaults.
"""
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
                           " --xla_llvm_disable_expensive_passes=true").strip()

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)


import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop each test module's compiled programs when it ends, so a worker's memory stays bounded."""
    yield
    jax.clear_caches()

"""Test configuration: every test runs in float64 (MATH.md section 6)."""
import jax

jax.config.update("jax_enable_x64", True)

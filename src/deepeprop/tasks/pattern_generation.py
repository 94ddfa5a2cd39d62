"""Pattern generation: map one frozen input spike pattern to target curves.

Bellec, Scherr, Subramoney, Hajek, Salaj, Legenstein & Maass (2020), "A solution
to the learning dilemma for recurrent networks of spiking neurons", Nature
Communications 11:3625, Fig. 2.

The input is one fixed Poisson spike pattern of ``n_in`` channels at ``rate``
Hz over ``n_steps`` steps of 1 ms. Each of the ``n_out`` targets is a sum of
sinusoids at ``frequencies_hz`` (default 1, 2, 3, 5 Hz, i.e. periods of 1000,
500, 333.3 and 200 steps), with amplitudes uniform in [0.5, 2] and phases
uniform in [0, 2 pi). The pattern and the targets are drawn once from
``pattern_seed`` and are the same for every batch, every batch element and both
splits: the task is to memorise one input/output mapping.

The batch ``seed`` matters only through the optional ``noise_rate`` (Hz):
when positive, fresh Poisson spikes drawn from ``(seed, split)`` are added to
the frozen pattern (a channel spikes when either the pattern or the noise
does), so train and test batches then differ. With the default
``noise_rate = 0`` every batch is identical. Loss mse on all steps, metric nmse.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .base import DT, RegressionTask, check_float, check_int, check_rate, poisson_spikes

AMPLITUDE_RANGE = (0.5, 2.0)


@functools.lru_cache(maxsize=16)
def frozen_pattern(
    n_in: int, n_out: int, n_steps: int, rate: float, frequencies_hz: tuple[float, ...], pattern_seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The frozen ``(spikes (T, n_in), targets (T, n_out))`` of one pattern seed (read-only)."""
    rng = np.random.default_rng(pattern_seed)
    spikes = poisson_spikes(rng, rate, (n_steps, n_in))  # (T, n_in)
    freqs = np.asarray(frequencies_hz, dtype=np.float64)  # (K,)
    amplitudes = rng.uniform(*AMPLITUDE_RANGE, size=(n_out, freqs.size))  # (n_out, K)
    phases = rng.uniform(0.0, 2.0 * np.pi, size=(n_out, freqs.size))  # (n_out, K)
    t = np.arange(n_steps, dtype=np.float64) * DT  # (T,) seconds
    angles = 2.0 * np.pi * freqs[None, None, :] * t[:, None, None] + phases[None]  # (T, n_out, K)
    targets = np.sum(amplitudes[None] * np.sin(angles), axis=-1).astype(np.float32)  # (T, n_out)
    spikes.flags.writeable = False
    targets.flags.writeable = False
    return spikes, targets


@dataclass(frozen=True)
class PatternGeneration(RegressionTask):
    name: ClassVar[str] = "pattern_generation"

    n_in: int = 100
    n_out: int = 1
    n_steps: int = 1000
    rate: float = 10.0  # Hz, frozen input pattern
    frequencies_hz: tuple[float, ...] = (1.0, 2.0, 3.0, 5.0)
    pattern_seed: int = 0
    noise_rate: float = 0.0  # Hz, fresh per-batch input spikes (0: every batch identical)

    def validate(self) -> None:
        self._set("n_in", check_int("n_in", self.n_in, minimum=1))
        self._set("n_out", check_int("n_out", self.n_out, minimum=1))
        self._set("n_steps", check_int("n_steps", self.n_steps, minimum=2))
        self._set("rate", check_rate("rate", self.rate))
        self._set("noise_rate", check_rate("noise_rate", self.noise_rate))
        self._set("pattern_seed", check_int("pattern_seed", self.pattern_seed, minimum=0))
        freqs = self.frequencies_hz
        if isinstance(freqs, (str, bytes)) or not hasattr(freqs, "__iter__") or len(freqs) == 0:
            raise ValueError(f"frequencies_hz must be a non-empty sequence of numbers, got {freqs!r}")
        self._set(
            "frequencies_hz",
            tuple(check_float("frequencies_hz", f, minimum=0.0, exclusive_minimum=True) for f in freqs),
        )

    def pattern(self) -> tuple[np.ndarray, np.ndarray]:
        """The frozen ``(spikes (T, n_in), targets (T, n_out))``."""
        return frozen_pattern(
            self.n_in, self.n_out, self.n_steps, self.rate, self.frequencies_hz, self.pattern_seed
        )

    def _generate(self, rng, batch_size, split):
        spikes, curves = self.pattern()  # (T, n_in), (T, n_out)
        T, B = self.n_steps, batch_size
        inputs = np.broadcast_to(spikes[:, None, :], (T, B, self.n_in))  # (T, B, n_in)
        if self.noise_rate > 0:
            inputs = np.maximum(inputs, poisson_spikes(rng, self.noise_rate, (T, B, self.n_in)))
        targets = np.broadcast_to(curves[:, None, :], (T, B, self.n_out))  # (T, B, n_out)
        mask = np.ones((T, B), dtype=np.float32)  # (T, B)
        return inputs, targets, mask

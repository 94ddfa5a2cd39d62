"""Evidence accumulation ("cue accumulation") task.

Bellec, Scherr, Subramoney, Hajek, Salaj, Legenstein & Maass (2020), "A solution
to the learning dilemma for recurrent networks of spiking neurons", Nature
Communications 11:3625, Fig. 3 (after the virtual-maze task of Morcos & Harvey
2016, Nature Neuroscience 19:1672).

The input has ``4 * channels_per_group`` spiking channels (default 40), in four
groups: left-cue ``[0, c)``, right-cue ``[c, 2c)``, recall-cue ``[2c, 3c)`` and
background ``[3c, 4c)`` with ``c = channels_per_group``. A trial (1 step = 1 ms)::

    lead_steps of silence | n_cues x (cue_steps of cue | gap_steps of silence) | delay_steps | recall_steps

While a cue lasts, the channels of its side fire at ``rate`` Hz. The background
channels fire at ``background_rate`` Hz for the whole trial, the recall channels
at ``rate`` Hz during the recall window. The label (0 = left, 1 = right) is the
side with the majority of the cues (``n_cues`` is odd), given on the recall
window only (the loss counts there and nowhere else).

The cue sides: with ``p_group=None`` (the default) each cue is left or right
with probability 1/2, independently. With ``p_group=p`` (Bellec et al.: 0.3)
each trial first draws which side is favoured (probability 1/2 each), then
each cue falls on the other side with probability ``p``: the majority is then
clearer (5 or more of 7 cues on one side in 68% of trials, against 45%).

:data:`BELLEC2020` holds the options of Bellec et al.'s code
(IGITUGraz/eligibility_propagation, ``generate_click_task_data`` as called in
``tutorial_evidence_accumulation_with_alif.py``): ``p_group=0.3``, 7 cues of 100 ms
every 150 ms with the first after 50 ms of silence, the recall cue on the last
150 ms, 40 Hz cue and recall channels, 10 Hz background, T = 2250 steps
(``CueAccumulation(**BELLEC2020)``). The defaults (``lead_steps=0``,
``p_group=None``, T = 2200) are this task's older statistics, kept so that
earlier runs keep their meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .base import (
    ClassificationTask,
    check_batch_size,
    check_float,
    check_int,
    check_rate,
    check_seed,
    make_rng,
    mask_from_labels,
    poisson_spikes,
    window_labels,
)

LEFT, RIGHT, RECALL, BACKGROUND = range(4)  # channel groups, in input order

# The statistics of Bellec et al. (2020)'s code (module docstring): T = 50 + 7 * 150 + 1000 + 150 = 2250 steps.
BELLEC2020 = dict(n_cues=7, cue_steps=100, gap_steps=50, lead_steps=50, delay_steps=1000, recall_steps=150,
                  rate=40.0, background_rate=10.0, channels_per_group=10, p_group=0.3)


@dataclass(frozen=True)
class CueAccumulation(ClassificationTask):
    name: ClassVar[str] = "cue_accumulation"

    n_cues: int = 7
    cue_steps: int = 100
    gap_steps: int = 50
    delay_steps: int = 1000
    recall_steps: int = 150
    rate: float = 40.0  # Hz, cue and recall channels while active
    background_rate: float = 10.0  # Hz, background channels throughout
    channels_per_group: int = 10
    lead_steps: int = 0  # silence before the first cue (Bellec et al.: 50)
    p_group: float | None = None  # None: fair coin per cue; p: per-trial favoured side, others with prob. p

    def validate(self) -> None:
        n_cues = check_int("n_cues", self.n_cues, minimum=1)
        if n_cues % 2 == 0:
            raise ValueError(f"n_cues must be odd (so that a majority side exists), got {n_cues}")
        self._set("n_cues", n_cues)
        self._set("cue_steps", check_int("cue_steps", self.cue_steps, minimum=1))
        self._set("gap_steps", check_int("gap_steps", self.gap_steps, minimum=0))
        self._set("delay_steps", check_int("delay_steps", self.delay_steps, minimum=0))
        self._set("recall_steps", check_int("recall_steps", self.recall_steps, minimum=1))
        self._set("rate", check_rate("rate", self.rate))
        self._set("background_rate", check_rate("background_rate", self.background_rate))
        self._set("channels_per_group", check_int("channels_per_group", self.channels_per_group, minimum=1))
        self._set("lead_steps", check_int("lead_steps", self.lead_steps, minimum=0))
        if self.p_group is not None:
            self._set("p_group", check_float("p_group", self.p_group, minimum=0.0, maximum=1.0))

    @property
    def n_in(self) -> int:
        return 4 * self.channels_per_group

    @property
    def n_out(self) -> int:
        return 2

    @property
    def recall_start(self) -> int:
        return self.lead_steps + self.n_cues * (self.cue_steps + self.gap_steps) + self.delay_steps

    @property
    def n_steps(self) -> int:
        return self.recall_start + self.recall_steps

    def cue_window(self, k: int) -> tuple[int, int]:
        """Steps ``[start, stop)`` of cue ``k``."""
        start = self.lead_steps + k * (self.cue_steps + self.gap_steps)
        return start, start + self.cue_steps

    def group_channels(self, group: int) -> slice:
        """Input channels of a group (``LEFT``, ``RIGHT``, ``RECALL`` or ``BACKGROUND``)."""
        c = self.channels_per_group
        return slice(group * c, (group + 1) * c)

    def _draw_sides(self, rng: np.random.Generator, batch_size: int) -> np.ndarray:
        if self.p_group is None:
            return rng.integers(0, 2, size=(batch_size, self.n_cues))  # (B, n_cues): 0 left, 1 right
        favoured = rng.integers(0, 2, size=(batch_size, 1))  # (B, 1): the trial's favoured side
        other = rng.random((batch_size, self.n_cues)) < self.p_group  # (B, n_cues): cue on the other side
        return np.where(other, 1 - favoured, favoured)  # (B, n_cues)

    def cue_sides(self, seed: int, batch_size: int, split: str = "train") -> np.ndarray:
        """The cue sides ``(B, n_cues)`` (0 = left, 1 = right) of ``batch(seed, batch_size, split)``."""
        rng = make_rng(check_seed(seed), self.check_split(split))
        return self._draw_sides(rng, check_batch_size(batch_size))

    def _generate(self, rng, batch_size, split):
        T, B, c = self.n_steps, batch_size, self.channels_per_group
        sides = self._draw_sides(rng, B)  # (B, n_cues)

        # side of the cue shown at each step, -1 between cues: (T, B)
        cue_of_step = np.full(T, -1)  # (T,)
        for k in range(self.n_cues):
            cue_of_step[slice(*self.cue_window(k))] = k
        side_of_step = np.where(cue_of_step[:, None] >= 0, sides.T[cue_of_step], -1)  # (T, B)
        side_on = side_of_step[..., None] == np.arange(2)  # (T, B, 2): left/right cue active

        rates = np.zeros((T, B, 4, c), dtype=np.float32)  # (T, B, group, channel) in Hz
        rates[:, :, LEFT:RIGHT + 1, :] = self.rate * side_on[..., None]
        rates[self.recall_start:, :, RECALL, :] = self.rate
        rates[:, :, BACKGROUND, :] = self.background_rate
        inputs = poisson_spikes(rng, rates.reshape(T, B, 4 * c), (T, B, 4 * c))  # (T, B, n_in)

        labels = (2 * sides.sum(axis=1) > self.n_cues).astype(np.int32)  # (B,) majority side
        targets = window_labels(labels, T, self.recall_start, T)  # (T, B)
        return inputs, targets, mask_from_labels(targets)

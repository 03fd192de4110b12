"""A seeded Atari reset without reloading the ROM, bit-identical to the official one.

ale-py's `reset(seed=s)` reloads the ROM to reseed the emulator's random stream (sticky
actions draw from it): 0.15-0.35 s on the dev machine's cores, as long as a few hundred agent
steps. Every training episode starts with a seeded reset, so short episodes (a Breakout life)
spend most of their time there.

What the reload leaves behind is the same emulator state for every seed but that stream: a
Mersenne Twister freshly seeded with the ALE seed ale-py derives from s, written in the ALE
state as libstdc++ writes a std::mt19937 (624 words and the index, as text; numpy's legacy
MT19937 seeding gives the same words). So the state after the reload for seed s is one
reload's state with that text replaced, and `restoreState` of it costs microseconds; the
reset then goes on as ale-py's does (`reset_game`).

Nothing here is taken on trust: the first seeded reset of each env reloads the ROM and
compares that state with the one built for its seed; on any difference (another ale-py, a game
whose load draws from the stream) the env keeps the official reload for good.
tests/test_envs.py plays sticky-action episodes both ways and compares every step.
"""
from __future__ import annotations

import re
import struct
from typing import Any, cast

import numpy as np

_RNG_TEXT = re.compile(rb"(?<![\d ])(?:\d+ ){624}624(?!\d)")  # a freshly seeded mt19937, as ALE writes it
_LENGTH_AT = 24  # where the serialized state holds its own length, less 36 bytes


def rng_text(seed_ale: int) -> bytes:
    """std::mt19937(seed_ale) as ALE serializes it."""
    legacy = cast("tuple[str, np.ndarray, int, int, float]",
                  np.random.RandomState(seed_ale & 0xFFFFFFFF).get_state(legacy=True))
    key = legacy[1]  # the 624 words of init_genrand(seed), std::mt19937's seeding
    return (" ".join(map(str, key.tolist())) + " 624").encode()


class StateTemplate:
    """One reloaded state, cut where its emulator seed is written."""

    def __init__(self, state: bytes):
        found = list(_RNG_TEXT.finditer(state))
        if len(found) != 1:
            raise ValueError("not one freshly seeded random stream in the ALE state")
        start, end = found[0].span()
        (length,) = struct.unpack_from("<I", state, start - 4)
        (total,) = struct.unpack_from("<I", state, _LENGTH_AT)
        if length != end - start or total != len(state) - 36:
            raise ValueError("unknown ALE state layout")
        self.head, self.tail = state[:start - 4], state[end:]

    def state_for(self, seed_ale: int) -> bytes:
        text = rng_text(seed_ale)
        body = self.head + struct.pack("<I", len(text)) + text + self.tail
        return body[:_LENGTH_AT] + struct.pack("<I", len(body) - 36) + body[_LENGTH_AT + 4:]


class SeededReset:
    """Installed on one ale_py AtariEnv as its seed_game and load_game (everything else stays
    ale-py's): a seeded reset restores the state built for its seed instead of reloading."""

    def __init__(self, atari: Any):
        self.atari = atari
        self.load_rom, self.seed_game = atari.load_game, atari.seed_game  # ale-py's own
        self.template: StateTemplate | None = None  # set once the first reload matched
        self.checked = False
        self.seed_ale = 0
        atari.seed_game, atari.load_game = self.seed, self.load

    def seed(self, seed: int | None = None) -> tuple[int, int]:
        seeded = self.seed_game(seed)
        self.seed_ale = int(seeded[1])
        return seeded

    def load(self) -> None:
        """The state ale-py's load_game leaves (ROM, mode and difficulty): built and restored,
        or, for the first seeded reset and after a failed check, reloaded."""
        import ale_py

        if self.template is not None:
            self.atari.ale.restoreState(ale_py.ALEState(self.template.state_for(self.seed_ale)))
            return
        self.load_rom()
        if not self.checked:
            self.checked = True
            state = self.atari.ale.cloneState(include_rng=True).serialize()
            try:
                built = StateTemplate(state)
            except ValueError:
                return
            self.template = built if built.state_for(self.seed_ale) == state else None


def fast_seeded_reset(atari: Any) -> SeededReset:
    """Make this ale_py AtariEnv's seeded resets restore a built state instead of reloading the ROM."""
    return SeededReset(atari)

"""Seedable fault injection for Platform calls."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class FaultConfig:
    """What goes wrong, and how often.

    * ``rate``: probability that a Platform call is answered with one of ``statuses``
      before the emulator does anything else (no auth check, no state change).
      429 answers carry ``Retry-After: retry_after``.
    * ``drop_after_commit_rate``: probability that a successful create (a POST that
      commits a new resource) closes the socket without answering, so the client
      cannot tell whether the resource exists.
    * ``seed``: reseeds the emulator's random generator when the config is applied,
      making fault sequences reproducible.
    """

    rate: float = 0.0
    statuses: tuple[int, ...] = (429, 500, 502, 503)
    drop_after_commit_rate: float = 0.0
    retry_after: int = 1
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("rate", "drop_after_commit_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value!r}")
        bad = [s for s in self.statuses if s not in (429, 500, 502, 503, 504)]
        if bad or not self.statuses:
            raise ValueError(f"statuses must be a non-empty subset of 429/500/502/503/504, got {self.statuses!r}")
        object.__setattr__(self, "statuses", tuple(self.statuses))


@dataclass
class FaultInjector:
    """Draws faults from one ``random.Random`` shared by all handler threads."""

    config: FaultConfig = field(default_factory=FaultConfig)
    seed: int | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(self.config.seed if self.config.seed is not None else self.seed)

    def configure(self, config: FaultConfig | None) -> None:
        with self._lock:
            self.config = config or FaultConfig()
            if self.config.seed is not None:
                self._rng = random.Random(self.config.seed)

    def draw_status(self) -> int | None:
        """The status to answer instead of handling the call, or None."""
        with self._lock:
            cfg = self.config
            if cfg.rate <= 0.0:
                return None
            if self._rng.random() < cfg.rate:
                return self._rng.choice(cfg.statuses)
            return None

    def draw_drop(self) -> bool:
        with self._lock:
            cfg = self.config
            return cfg.drop_after_commit_rate > 0.0 and self._rng.random() < cfg.drop_after_commit_rate

"""The slot clock (DESIGN.md section 2), mirroring CommunityRegistry's views.

Slot ``s`` is delivered during ``[epoch + s * slot_seconds, epoch + (s + 1) * slot_seconds)``;
trading for it closes at gate closure, ``gate_seconds`` before the slot starts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SlotClock:
    epoch: int
    slot_seconds: int
    gate_seconds: int

    def slot_at(self, timestamp: int) -> int:
        """The slot in delivery at ``timestamp`` (0 before the epoch)."""
        return max(timestamp - self.epoch, 0) // self.slot_seconds

    def slot_start(self, slot: int) -> int:
        return self.epoch + slot * self.slot_seconds

    def gate_closure(self, slot: int) -> int:
        """Timestamp from which orders for ``slot`` are refused (0 if always closed)."""
        return max(self.slot_start(slot) - self.gate_seconds, 0)

    def is_open(self, slot: int, timestamp: int) -> bool:
        return timestamp < self.gate_closure(slot)

    def next_open_slot(self, timestamp: int) -> int:
        """The first slot still open for trading at ``timestamp``."""
        shifted = timestamp + self.gate_seconds
        if shifted < self.epoch:
            return 0
        return (shifted - self.epoch) // self.slot_seconds + 1

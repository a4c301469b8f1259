"""The device budget: planned RAM and file size against the device's SRAM and flash.

``export`` and ``plan`` (Python and CLI) compare the planned peak of a training step
(everything included: the planner's arena + runtime state) with the RAM budget and the
training file with the flash budget (defaults: 256 KB / 1 MB, the target device), and
report how much larger the training file is than the inference model it carries. Over
budget is refused with one line naming what is over and by how much, unless the check is
turned off. The firmware's own code (about 86 KB for the Cortex-M4 runtime,
benchmarks/results/mcu_run.json) comes on top of the file in flash.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from .graph import GraphError

DEFAULT_RAM_KB = 256
DEFAULT_FLASH_KB = 1024
#: Largest budget accepted (a sanity bound: 64 MB).
MAX_BUDGET_KB = 64 * 1024


class BudgetError(GraphError):
    """The plan or the file does not fit the device budget (one line: what, by how much)."""


def check_kb(value, what: str) -> int:
    """A budget in KB as a positive int; GraphError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BUDGET_KB:
        raise GraphError(f"{what} must be an integer number of KB in [1, {MAX_BUDGET_KB}], not {value!r}")
    return value


def _kb(n: int) -> str:
    return f"{n / 1024:.1f} KB"


@dataclass
class BudgetReport:
    """Planned RAM and file bytes against the budget (KB = 1024 bytes)."""

    ram_bytes: int                      # planned peak of the step, everything included
    ram_kb: int
    file_bytes: int                     # the training file (or, planning inference, the model)
    flash_kb: int
    inference_bytes: Optional[int] = None   # the inference model the training file carries
    what: str = "training file"

    def __post_init__(self):
        check_kb(self.ram_kb, "the RAM budget")
        check_kb(self.flash_kb, "the flash budget")

    @property
    def overhead_bytes(self) -> Optional[int]:
        """Bytes the training file adds to its inference model (training graph, plan, metadata)."""
        return None if self.inference_bytes is None else self.file_bytes - self.inference_bytes

    @property
    def overhead_percent(self) -> Optional[float]:
        if self.inference_bytes is None or self.inference_bytes <= 0:
            return None
        return 100.0 * self.overhead_bytes / self.inference_bytes

    def over(self) -> List[str]:
        """What exceeds the budget, one phrase each (empty: it fits)."""
        out = []
        ram, flash = self.ram_kb * 1024, self.flash_kb * 1024
        if self.ram_bytes > ram:
            out.append(f"RAM: planned peak {self.ram_bytes:,} bytes ({_kb(self.ram_bytes)}) is over the "
                       f"{self.ram_kb} KB budget by {self.ram_bytes - ram:,} bytes ({_kb(self.ram_bytes - ram)})")
        if self.file_bytes > flash:
            out.append(f"flash: the {self.what} of {self.file_bytes:,} bytes ({_kb(self.file_bytes)}) is over the "
                       f"{self.flash_kb} KB budget by {self.file_bytes - flash:,} bytes "
                       f"({_kb(self.file_bytes - flash)})")
        return out

    @property
    def fits(self) -> bool:
        return not self.over()

    def check(self, name: str = "") -> "BudgetReport":
        """Raise BudgetError (one line) if anything is over the budget; returns self."""
        over = self.over()
        if over:
            who = f"{name}: " if name else ""
            raise BudgetError(f"{who}over the device budget: " + "; ".join(over)
                              + " (train fewer layers or channels; --ram-kb / --flash-kb or ram_kb= / flash_kb= set "
                                "the budget, --no-budget-check / budget_check=False skips the check)")
        return self

    def describe(self) -> str:
        ram_pct = 100.0 * self.ram_bytes / (self.ram_kb * 1024)
        flash_pct = 100.0 * self.file_bytes / (self.flash_kb * 1024)
        lines = [f"budget: RAM {self.ram_bytes:,} bytes ({_kb(self.ram_bytes)}) of {self.ram_kb} KB ({ram_pct:.0f} %), "
                 f"{self.what} {self.file_bytes:,} bytes ({_kb(self.file_bytes)}) of {self.flash_kb} KB flash "
                 f"({flash_pct:.0f} %): " + ("fits" if self.fits else "OVER")]
        if self.overhead_bytes is not None:
            lines.append(f"training file overhead over its inference model ({self.inference_bytes:,} bytes): "
                         f"+{self.overhead_bytes:,} bytes (+{self.overhead_percent:.1f} %)")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        d = dict(ram_bytes=self.ram_bytes, ram_budget_bytes=self.ram_kb * 1024, file_bytes=self.file_bytes,
                 flash_budget_bytes=self.flash_kb * 1024, fits=self.fits, over=self.over())
        if self.inference_bytes is not None:
            d.update(inference_bytes=self.inference_bytes, overhead_bytes=self.overhead_bytes,
                     overhead_percent=round(self.overhead_percent, 2) if self.overhead_percent is not None else None)
        return d

"""Memory needed by a run, estimated from its grid before it starts, against what is free.

A reconstruction grid grows with the square of the field over the bin: Micro-Manager's own demo
configuration (512 x 512 pixels of 1 um) at 40 nm bins is 12,800 x 12,800 bins, which no machine
reconstructs. Each command estimates its peak memory from the grid, the window and the model
and refuses, before any work, with what would fit, instead of being killed by the kernel.

The per-bin costs are measured (``scripts/bench_memory.py`` prints estimate and measured peak
side by side; ``tests/test_resources.py`` checks them against a real run):

- live streaming (per bin): the child's forward features and buffered maps, ``(D + 1)`` of
  ``1 + h`` floats, twice for the backward pass, plus about ``72 h`` floats of transient
  activations; the parent's ``history_maps`` count maps for the display and evidence.
- offline (per bin and map of a step, all batched phase sequences together): about ``26 h``
  floats of activations and 2 of outputs; each sequence in the batch keeps its state.
- simulation (per bin): the ``supersample**2`` sub-bin coverage mask and its mean (9 bytes per
  sub-bin), the maps of one block; per camera pixel, a block of frames in float64.

Plus a fixed part (buffers, the model, caches) that does not grow with the grid. On the
2-core CPU machine the estimates run 1.29-1.58x the largest of 5 measured peaks for 128-512
bins square (the peak of one case varies by up to 35 % between runs: the C allocator's placement
of transient activations).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from dblink_live.errors import DblinkError

__all__ = [
    "MemoryNeed",
    "available_memory_bytes",
    "display_bytes_per_bin",
    "format_bytes",
    "live_bytes_per_bin",
    "offline_bytes_per_bin",
    "offline_disk_bytes_per_bin",
    "simulate_bytes_per_bin",
]

#: A run may plan to use at most this fraction of the memory available when it starts.
USABLE_FRACTION = 0.8
#: Bytes that do not grow with the grid (buffers, the model, zarr and torch caches), measured.
LIVE_FIXED_BYTES = 32e6
OFFLINE_FIXED_BYTES = 128e6


def format_bytes(n: float) -> str:
    """``1.5e9`` -> ``"1.5 GB"``."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n / 1e3:.3g} kB"


def available_memory_bytes(device: str = "cpu") -> int:
    """Memory a new allocation can get now: CUDA's free memory on a GPU device, else the
    kernel's ``MemAvailable`` (Linux), else the physical memory."""
    if str(device).startswith("cuda"):
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not refuse


def display_bytes_per_bin(history_maps: int) -> float:
    """Bytes per grid bin the live parent keeps: the display's count maps and a few more."""
    return 4.0 * (history_maps + 8)


def live_bytes_per_bin(hidden: int, delay_maps: int, history_maps: int) -> float:
    """Peak bytes per grid bin of live streaming (child and parent together)."""
    child = 4.0 * (2 * (delay_maps + 1) * (1 + hidden) + 72 * hidden)
    return child + display_bytes_per_bin(history_maps)


def offline_bytes_per_bin(hidden: int, chunk_maps: int, phases: int = 1) -> float:
    """Peak bytes per grid bin of offline reconstruction with ``chunk_maps`` maps a step (of
    all the phase sequences batched together) and ``phases`` sequences in the batch (stride
    < W): activations of every map of the step, its outputs, each sequence's state."""
    return 4.0 * (chunk_maps * (26 * hidden + 2) + phases * 4 * hidden)


def offline_disk_bytes_per_bin(hidden: int, n_maps: int, phases: int = 1) -> float:
    """Temporary disk per grid bin: the backward features of every map, float32."""
    return 4.0 * hidden * n_maps * phases


def simulate_bytes_per_bin(supersample: int, maps_per_block: int) -> float:
    """Peak bytes per grid bin of simulating the ground truth."""
    return 9.0 * supersample**2 + 8.0 + 5.0 * maps_per_block


@dataclass(frozen=True)
class MemoryNeed:
    """The memory a run needs on its grid.

    Attributes
    ----------
    what
        What runs, for the message (e.g. ``"live reconstruction"``).
    grid_yx
        (Y', X') bins of the reconstruction grid.
    bin_nm
        Bin size (nm).
    per_bin
        Peak bytes per bin.
    fixed
        Bytes that do not grow with the grid (frames, model).
    """

    what: str
    grid_yx: tuple[int, int]
    bin_nm: float
    per_bin: float
    fixed: float = 0.0

    @property
    def bytes(self) -> float:
        return self.per_bin * self.grid_yx[0] * self.grid_yx[1] + self.fixed

    def largest_square_bins(self, available: float) -> int:
        """Side (bins) of the largest square grid that fits in ``available`` bytes."""
        room = USABLE_FRACTION * available - self.fixed
        return int(math.sqrt(room / self.per_bin)) if room > 0 else 0

    def fits(self, device: str = "cpu") -> bool:
        """Whether the need is within the usable memory of ``device`` now."""
        return self.bytes <= USABLE_FRACTION * available_memory_bytes(device)

    def check(
        self, device: str = "cpu", advice: str = "", pixel_size_nm: float | None = None
    ) -> None:
        """Raise one :class:`DblinkError` if the need exceeds the usable memory of ``device``.

        The message says the grid, the need, what is free, the largest square field that fits
        (in camera pixels too, given ``pixel_size_nm``) and ``advice``, in which ``{px}``
        becomes that field's side in camera pixels and ``{um}`` in micrometres.
        """
        avail = available_memory_bytes(device)
        if self.bytes <= USABLE_FRACTION * avail:
            return
        ny, nx = self.grid_yx
        side = self.largest_square_bins(avail)
        side_um = side * self.bin_nm / 1e3
        side_px = int(side_um * 1e3 / pixel_size_nm) if pixel_size_nm else 0
        field = f"about {side_um:.0f} x {side_um:.0f} um ({side:,} x {side:,} bins"
        field += f"; {side_px} x {side_px} camera pixels)" if pixel_size_nm else ")"
        raise DblinkError(
            f"{self.what} on {ny:,} x {nx:,} bins of {self.bin_nm:g} nm "
            f"({nx * self.bin_nm / 1e3:.0f} x {ny * self.bin_nm / 1e3:.0f} um) needs about "
            f"{format_bytes(self.bytes)}, and {format_bytes(avail)} is free on {device}: "
            f"a field of {field} fits"
            + (f"; {advice.format(um=round(side_um), px=side_px)}" if advice else "")
        )

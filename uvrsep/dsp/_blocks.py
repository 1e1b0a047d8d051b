"""How much work one torch call takes on: the block sizes of the DSP loops."""

from __future__ import annotations

import torch

#: Bytes of operands per block on the CPU with one intra-op thread: blocks stay in the L2 cache.
CPU_SERIAL_BYTES = 1 << 20
#: ... and with more threads: every op is a parallel region whose synchronisation costs more
#: than cache misses (badly so on a loaded machine), so blocks are large (memory stays bounded).
CPU_PARALLEL_BYTES = 64 << 20


def rows_per_block(device: torch.device, row_bytes: int, rows: int, serial_bytes: int = CPU_SERIAL_BYTES) -> int:
    """Rows of ``row_bytes`` bytes each per block of a loop over ``rows`` rows on ``device``:
    all of them on a GPU; on the CPU, ``serial_bytes`` (default :data:`CPU_SERIAL_BYTES`) with
    one intra-op thread, :data:`CPU_PARALLEL_BYTES` with more."""
    if device.type != "cpu":
        return max(1, rows)
    budget = serial_bytes if torch.get_num_threads() == 1 else CPU_PARALLEL_BYTES
    return max(1, min(rows, budget // max(1, row_bytes)))

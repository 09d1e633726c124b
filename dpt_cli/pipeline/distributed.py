"""Many processes, one folder: torchrun's process group shares the work out, photo by photo.

Under torchrun (RANK, WORLD_SIZE and LOCAL_RANK set) every rank expands the inputs and plans the
outputs identically, then meets the others (`meet`) before any output is written, so that no
rank takes another's fresh output for an existing one. Photos are handed out in small chunks
through an atomic counter in the process group's store (`store.add`): a fast rank takes more, a
slow one less, and each photo is done by exactly one rank. Each rank merges its own records into
the manifest (the merge is locked; see `manifest`), so a rank that dies loses nothing of the
others'. Before exiting, ranks meet again and agree on one exit status: torchrun stops every rank
as soon as one exits non-zero, so none may leave early.

Every wait polls the store with a timeout and stops on Ctrl-C/SIGTERM (torchrun sends SIGTERM to
the survivors when a rank dies), so nothing hangs.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterator

from ..errors import DPTError

PREFIX = "dpt/"
CHUNK = 4  # photos per claim: small enough to balance, large enough that claims cost nothing
MEET_TIMEOUT = 30 * 60  # seconds ranks wait for each other at a meeting (model loading included)
POLL = 0.05


@dataclass(frozen=True)
class Cluster:
    rank: int
    world: int
    local_rank: int
    store: object  # torch.distributed.Store

    def claim(self, count: int, chunk: int = CHUNK) -> Iterator[int]:
        """Indices 0..count-1, those this rank claims, in chunks taken from the shared counter."""
        while True:
            end = self.store.add(PREFIX + "next", chunk)
            start = end - chunk
            if start >= count:
                return
            yield from range(start, min(end, count))

    def claimed(self, todo: list[int], records: list) -> Iterator[int]:
        """The inputs of `todo` this rank takes, each record marked with the rank."""
        for k in self.claim(len(todo)):
            records[todo[k]].rank = self.rank
            yield todo[k]

    def mine(self, records: list, shared: set[int]) -> list:
        """The records this rank answers for: those it claimed, and on rank 0 those no rank claims
        (inputs that failed to expand, outputs that exist); the `shared` ones (record indices) the
        other ranks claimed are theirs to record."""
        kept = []
        for j, r in enumerate(records):
            if r.rank == self.rank:
                kept.append(r)
            elif self.rank == 0 and r.rank is None and j not in shared:
                r.rank = 0
                kept.append(r)
        return kept

    def meet(self, name: str, timeout: float = MEET_TIMEOUT) -> None:
        """Wait until every rank has reached the meeting `name`."""
        self.store.add(PREFIX + name, 1)
        deadline = time.monotonic() + timeout
        while self.store.add(PREFIX + name, 0) < self.world:
            if time.monotonic() > deadline:
                raise DPTError(f"rank {self.rank}: the other ranks did not reach '{name}' within {timeout:.0f} s")
            time.sleep(POLL)

    def agree(self, code: int) -> int:
        """The job's exit status, the same on every rank: 130 if any rank was interrupted, else 1
        if any photo failed anywhere, else 2 for a usage error on any rank, else 0."""
        self.store.set(f"{PREFIX}code/{self.rank}", str(code))
        self.meet("finished", timeout=float("inf"))
        codes = {int(self.store.get(f"{PREFIX}code/{r}")) for r in range(self.world)}
        return next((c for c in (130, 1, 2) if c in codes), 0)

    def count(self, key: str, add: int = 0) -> int:
        """A job-wide counter (photos written, ...)."""
        return self.store.add(PREFIX + key, add)


def launched() -> bool:
    """Whether this process is one rank of a torchrun job (of more than one process)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def join(cuda: bool) -> Cluster:
    """Join torchrun's process group (nccl with GPUs, gloo on CPUs) and return this rank's view."""
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if cuda else "gloo"
        if cuda:
            import torch

            if local_rank >= torch.cuda.device_count():
                raise DPTError(f"rank {os.environ.get('RANK')}: LOCAL_RANK {local_rank} but this machine has {torch.cuda.device_count()} GPU(s)")
            torch.cuda.set_device(local_rank)
        try:
            dist.init_process_group(backend, timeout=timedelta(seconds=MEET_TIMEOUT))
        except Exception as exc:  # noqa: BLE001 - a rendezvous problem is one line for the user
            raise DPTError(f"cannot join the torchrun job ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    store = dist.distributed_c10d._get_default_store()
    return Cluster(dist.get_rank(), dist.get_world_size(), local_rank, store)

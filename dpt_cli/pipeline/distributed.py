"""Many processes, one folder: torchrun's process group shares the work out, photo by photo.

Under torchrun (RANK, WORLD_SIZE and LOCAL_RANK set) every rank expands the inputs and plans the
outputs identically, then meets the others (`meet`) before any output is written, so that no
rank takes another's fresh output for an existing one. Photos are handed out in small chunks
through an atomic counter in the process group's store (`store.add`): a fast rank takes more, a
slow one less, and each photo is done by exactly one rank. Each rank merges its own records into
the manifest (the merge is locked; see `manifest`), so a rank that dies loses nothing of the
others'. Before exiting, ranks meet again and agree on one exit status: torchrun stops every rank
as soon as one exits non-zero, so none may leave early.

Keys are per job and per restart attempt (torchrun keeps its store across restarts). A rank that
stops early (interrupted, or an error) raises the job's abort flag: the others' waits see it and
stop, and a rank that was interrupted leaves without waiting (torchrun's SIGTERM is a request to
go). Waits before the work have a timeout; the last one waits for the slowest rank's work.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterator

from ..errors import DPTError

CHUNK = 4  # photos per claim: small enough to balance, large enough that claims cost nothing
MEET_TIMEOUT = 30 * 60  # seconds ranks wait for each other before the work (model loading included)
POLL = 0.05


class Aborted(DPTError):
    """Another rank stopped the job."""


def _prefix() -> str:
    run = os.environ.get("TORCHELASTIC_RUN_ID", "job")
    return f"dpt/{run}/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}/"


@dataclass(frozen=True)
class Cluster:
    rank: int
    world: int
    local_rank: int
    store: object  # torch.distributed.Store
    prefix: str = "dpt/"

    def claimed(self, todo: list[int], records: list) -> Iterator[int]:
        """The inputs of `todo` this rank takes, a chunk at a time from the shared counter; each
        chunk's records are marked with the rank as it is taken (so an interruption records them)."""
        while True:
            end = self.count("next", CHUNK)
            start = end - CHUNK
            if start >= len(todo):
                return
            chunk = [todo[k] for k in range(start, min(end, len(todo)))]
            for i in chunk:
                records[i].rank = self.rank
            yield from chunk

    def take_the_rest(self, todo: list[int], records: list) -> None:
        """On an interruption: claim every input no rank has taken, to record it as interrupted
        (best effort: the store may be gone with the job)."""
        try:
            end = self.count("next", len(todo) + CHUNK)
        except Exception:  # noqa: BLE001 - the manifest is written all the same
            return
        for k in range(max(0, end - len(todo) - CHUNK), len(todo)):
            records[todo[k]].rank = self.rank

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
        """Wait until every rank has reached the meeting `name` (Aborted if one stopped the job)."""
        self.count(name, 1)
        deadline = time.monotonic() + timeout
        while self.count(name) < self.world:
            if self.count("abort"):
                raise Aborted(f"rank {self.rank}: another rank stopped the job (see its message)")
            if time.monotonic() > deadline:
                raise DPTError(f"rank {self.rank}: the other ranks did not reach '{name}' within {timeout:.0f} s")
            time.sleep(POLL)

    def abort(self) -> None:
        """Tell the other ranks that this one stops early."""
        try:
            self.count("abort", 1)
        except Exception:  # noqa: BLE001 - the store may be gone with its host: nothing to tell
            pass

    def agree(self, code: int) -> int:
        """The job's exit status, the same on every rank: 130 if any rank was interrupted, else 1
        if any photo failed anywhere, else 0. Waits for every rank's work to end."""
        self.store.set(f"{self.prefix}code/{self.rank}", str(code))
        self.meet("finished", timeout=float("inf"))
        codes = {int(self.store.get(f"{self.prefix}code/{r}")) for r in range(self.world)}
        return next((c for c in (130, 1) if c in codes), 0)

    def count(self, key: str, add: int = 0) -> int:
        """A job-wide counter (photos written, ...)."""
        return self.store.add(self.prefix + key, add)


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

            # a launcher may give each rank one GPU through CUDA_VISIBLE_DEVICES
            gpus = torch.cuda.device_count()
            if local_rank >= gpus and gpus != 1:
                raise DPTError(f"rank {os.environ.get('RANK')}: LOCAL_RANK {local_rank} but this machine has {gpus} GPU(s)")
            local_rank = local_rank if local_rank < gpus else 0
            torch.cuda.set_device(local_rank)
        try:
            dist.init_process_group(backend, timeout=timedelta(seconds=MEET_TIMEOUT))
        except Exception as exc:  # noqa: BLE001 - a rendezvous problem is one line for the user
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise DPTError(f"cannot join the torchrun job ({type(exc).__name__}: {first})") from None
    store = dist.distributed_c10d._get_default_store()
    return Cluster(dist.get_rank(), dist.get_world_size(), local_rank, store, _prefix())


def leave() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()

"""Benchmark: how `Cluster.claim` (dpt_cli/pipeline/distributed.py) shares work out across ranks.

Simulated ranks: N worker processes on this one machine (spawned, no model, no network, no GPU),
started once and reused across trials, each connected to a torch.distributed.TCPStore served by
this parent, each building `Cluster(rank, N, rank, store)` and taking items through
`claim(items, chunk)` from the shared atomic counter (`store.add`). "Processing" an item is a model stub of fixed cost: time.sleep(cost)
(sleeping, so that ranks scale on few cores the way GPUs would; what is measured is the hand-out,
not compute). Every trial gets a fresh PrefixStore namespace, so its counter starts at 0.
  1. Scaling: N in --ranks, identical ranks; wall from the common start signal to the last rank's
     end (process start, torch import and connecting untimed). speed-up vs 1 rank, ideal = N,
     efficiency; "floor s": the least wall with whole chunks, ceil(items / chunk / N) * chunk * cost.
  2. Imbalance: N=2, rank 1 3x slower per item. The dynamic hand-out gives the fast rank ~3x the
     items; wall vs total_work / (sum of rates), and vs a static half/half split (computed, not run:
     max(n/2 * cost_fast, n/2 * cost_slow)).
  3. Hand-out overhead: median round trip of one `store.add` from a client (one per chunk claimed),
     in microseconds, and as a fraction of one chunk's work at --cost and --chunk.

Usage: .venv/bin/python bench/bench_scale.py [--items 400] [--cost 0.02] [--ranks 1,2,4,8] [--chunk 4]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dpt_cli.pipeline.distributed import CHUNK, Cluster  # noqa: E402

HOST = "127.0.0.1"
TIMEOUT = timedelta(seconds=120)


def client(port: int, prefix: str):
    import torch.distributed as dist

    store = dist.TCPStore(HOST, port, None, False, timeout=TIMEOUT)
    return dist.PrefixStore(prefix, store)


def worker(port: int, rank: int, tasks) -> None:
    """One simulated rank, kept across trials (spawned and torch imported once): runs each trial sent."""
    import torch.distributed as dist

    base = dist.TCPStore(HOST, port, None, False, timeout=TIMEOUT)
    base.add("pool/up", 1)
    while (task := tasks.get()) is not None:
        prefix, world, items, chunk, cost = task
        store = dist.PrefixStore(prefix, base)
        cluster = Cluster(rank, world, rank, store)
        store.add("ready", 1)
        store.wait(["go"])  # the parent sets it once every rank is connected: a common start
        t0 = time.time()
        done = 0
        for _ in cluster.claim(items, chunk):
            time.sleep(cost)  # the model stub: a fixed cost per item
            done += 1
        store.set(f"result/{rank}", f"{done} {t0!r} {time.time()!r}")


def trial(pool, port: int, prefix: str, items: int, chunk: int, costs: list[float]) -> tuple[float, list[int]]:
    """Run ranks 0..len(costs)-1 of the pool (rank r sleeps costs[r] per item); return (wall s, items per rank)."""
    world = len(costs)
    procs = [p for p, _ in pool[:world]]
    for r, c in enumerate(costs):
        pool[r][1].put((prefix, world, items, chunk, c))
    store = client(port, prefix)
    deadline = time.monotonic() + TIMEOUT.total_seconds()
    while store.add("ready", 0) < world:
        if time.monotonic() > deadline or any(p.exitcode is not None for p in procs):
            sys.exit(f"{prefix}: the workers did not all start")
        time.sleep(0.01)
    store.set("go", "1")
    store.wait([f"result/{r}" for r in range(world)])
    rows = [store.get(f"result/{r}").decode().split() for r in range(world)]
    done = [int(d) for d, _, _ in rows]
    wall = max(float(e) for _, _, e in rows) - min(float(s) for _, s, _ in rows)
    if sum(done) != items:
        sys.exit(f"{prefix}: {sum(done)} items processed, expected {items}")
    return wall, done


def add_round_trip_us(port: int, calls: int = 2000) -> float:
    store = client(port, "overhead/")
    for _ in range(100):  # warm-up
        store.add("next", CHUNK)
    times = []
    for _ in range(calls):
        t = time.perf_counter_ns()
        store.add("next", CHUNK)
        times.append(time.perf_counter_ns() - t)
    return statistics.median(times) / 1e3


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=400, help="items per trial")
    ap.add_argument("--cost", type=float, default=0.02, help="seconds per item (the stub's fixed cost)")
    ap.add_argument("--ranks", default="1,2,4,8", help="rank counts to run, comma separated")
    ap.add_argument("--chunk", type=int, default=CHUNK, help="items per claim")
    args = ap.parse_args()
    ranks = [int(r) for r in args.ranks.split(",") if r.strip()]

    import torch
    import torch.distributed as dist

    master = dist.TCPStore(HOST, 0, None, True, timeout=TIMEOUT, wait_for_workers=False)
    port = master.port
    ctx = mp.get_context("spawn")
    t_setup, pool = time.monotonic(), []
    for r in range(max(ranks + [2])):  # the imbalance case needs 2
        tasks = ctx.Queue()
        proc = ctx.Process(target=worker, args=(port, r, tasks), daemon=True)
        proc.start()
        pool.append((proc, tasks))
    deadline = time.monotonic() + TIMEOUT.total_seconds()
    while master.add("pool/up", 0) < len(pool):  # all up before any trial: none is still importing torch
        if time.monotonic() > deadline or any(p.exitcode is not None for p, _ in pool):
            sys.exit("the simulated ranks did not all start")
        time.sleep(0.05)
    setup = time.monotonic() - t_setup
    print(f"SIMULATED ranks: {len(pool)} at most, processes on this one machine ({cpu_model()}, "
          f"{mp.cpu_count()} CPUs), no model/GPU/network; torch {torch.__version__}, TCPStore on {HOST}:{port}; "
          f"{setup:.1f} s to start them (untimed)")
    print(f"stub: time.sleep({args.cost * 1e3:g} ms) per item; {args.items} items per trial; chunk {args.chunk} "
          f"(distributed.CHUNK = {CHUNK})\n")

    print(f"{'ranks':>5} {'items':>6} {'wall s':>7} {'items/s':>8} {'speed-up':>8} {'ideal':>5} {'effic.':>6} {'floor s':>7}  items per rank")
    base = None
    for n in ranks:
        wall, done = trial(pool, port, f"scale{n}/", args.items, args.chunk, [args.cost] * n)
        rate = args.items / wall
        base = base if base is not None else (rate if n == 1 else None)
        speed = f"{rate / base:8.2f}" if base else f"{'-':>8}"
        eff = f"{rate / base / n:6.0%}" if base else f"{'-':>6}"
        floor = -(-args.items // (args.chunk * n)) * args.chunk * args.cost
        print(f"{n:>5} {args.items:>6} {wall:>7.2f} {rate:>8.1f} {speed} {n:>5} {eff} {floor:>7.2f}  {done}")
    print(f"(one rank's ideal: {args.items * args.cost:.2f} s = items x cost; speed-up is vs the measured 1-rank row; "
          "floor s = the least wall with whole chunks of the stub's cost)\n")

    fast, slow = args.cost, 3 * args.cost
    wall, (n_fast, n_slow) = trial(pool, port, "hetero/", args.items, args.chunk, [fast, slow])
    fluid = args.items / (1 / fast + 1 / slow)
    static = max(args.items / 2 * fast, args.items / 2 * slow)
    print(f"imbalance: 2 ranks, rank 0 {fast * 1e3:g} ms/item, rank 1 {slow * 1e3:g} ms/item (3x slower)")
    print(f"  items taken: fast {n_fast}, slow {n_slow}, ratio {n_fast / max(n_slow, 1):.2f} (rates' ratio 3.00)")
    print(f"  wall {wall:.2f} s vs total_work/(sum of rates) {fluid:.2f} s ({wall / fluid:.2f}x); "
          f"static half/half split (computed) {static:.2f} s -> dynamic is {static / wall:.2f}x faster\n")

    rt = add_round_trip_us(port)
    chunk_us = args.chunk * args.cost * 1e6
    print(f"hand-out overhead: store.add round trip median {rt:.1f} us (2000 calls, one client, loopback TCP); "
          f"one per chunk of {args.chunk} x {args.cost * 1e3:g} ms = {chunk_us / 1e3:g} ms of work -> "
          f"{rt / chunk_us:.4%} of a chunk")
    for proc, tasks in pool:
        tasks.put(None)
    for proc, _ in pool:
        proc.join(timeout=10)
    del master


if __name__ == "__main__":
    main()

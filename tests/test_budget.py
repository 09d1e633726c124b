"""The pixel budget: photos in flight never hold more than it, whatever their sizes, in order,
without deadlock (also through the real runner with partial batches waiting)."""

from __future__ import annotations

import threading
import time

import pytest

from cli import run_cli
from dpt_cli.pipeline import budget as budget_module
from dpt_cli.pipeline import runner
from dpt_cli.pipeline.budget import PixelBudget, Stopped
from test_cli_depth import photo


def test_grants_follow_ticket_order_and_the_limit():
    b = PixelBudget(100)
    first, second, third = b.ticket(), b.ticket(), b.ticket()
    assert b.acquire(first, 60) == 60
    got = []
    waiter = threading.Thread(target=lambda: got.append(b.acquire(third, 10)))
    waiter.start()
    time.sleep(0.2)
    assert not got  # third waits for second's turn even though 10 pixels would fit
    held = []
    t = threading.Thread(target=lambda: held.append(b.acquire(second, 50)))
    t.start()
    time.sleep(0.2)
    assert not held and b.starved  # 60 + 50 > 100: second waits for pixels, and says so
    b.release(60)
    t.join(5)
    waiter.join(5)
    assert held == [50] and got == [10] and b.used == 60


def test_a_photo_larger_than_the_budget_runs_alone():
    b = PixelBudget(100)
    small, huge = b.ticket(), b.ticket()
    b.acquire(small, 30)
    granted = []
    t = threading.Thread(target=lambda: granted.append(b.acquire(huge, 10_000)))
    t.start()
    time.sleep(0.2)
    assert not granted
    b.release(30)
    t.join(5)
    assert granted == [100] and b.used == 100  # it counts as the whole budget


def test_skipped_tickets_and_stop():
    stop = threading.Event()
    b = PixelBudget(10, stop)
    a, c, d = b.ticket(), b.ticket(), b.ticket()
    b.skip(a)
    b.acquire(c, 10)
    stop.set()
    with pytest.raises(Stopped):
        b.acquire(d, 5)


def test_the_runner_keeps_to_a_tiny_budget_without_deadlock(saved_models, tmp_path, monkeypatch):
    """Photos of 2,000 pixels against a 4,500-pixel budget with batches of 4: partial batches must
    be flushed for the next photo to be admitted, and the budget is never exceeded."""
    folder, _ = saved_models("readout_add")
    for i, size in enumerate([(40, 50)] * 9 + [(100, 120)] + [(40, 50)] * 3):
        photo(tmp_path / "in" / f"{i:02d}.png", size, seed=i)
    peaks = []
    acquire = PixelBudget.acquire

    def recording(self, ticket, pixels):
        granted = acquire(self, ticket, pixels)
        peaks.append((self.used, granted))
        return granted

    monkeypatch.setattr(budget_module.PixelBudget, "acquire", recording)
    monkeypatch.setattr(runner, "PIXEL_BUDGET", 4500)
    result = run_cli("depth", tmp_path / "in", "-o", tmp_path / "out", "-m", folder, "--batch-size", "4", "--side-by-side")
    assert result.code == 0, result.err
    assert len(list((tmp_path / "out").glob("*.side-by-side.png"))) == 13
    assert max(used for used, granted in peaks) <= 4500
    assert (4500, 4500) in peaks  # the 12,000-pixel photo ran alone, as the whole budget

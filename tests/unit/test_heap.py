"""The export's garbage-collection scope: the heap from before is frozen only while the export runs."""

from __future__ import annotations

import gc
import weakref

import pytest

from airflow_provider_orchestrator_audit.export.heap import YOUNG_THRESHOLD, collect_only_new_objects


class Node:
    """An object that can sit in a reference cycle and be watched by a weak reference."""

    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref[Node]:
    first, second = Node(), Node()
    first.other, second.other = second, first
    return weakref.ref(first)


@pytest.fixture(autouse=True)
def unfrozen_heap():
    assert gc.get_freeze_count() == 0
    threshold = gc.get_threshold()
    unfreeze = gc.unfreeze  # the real one, whatever a test puts in its place
    yield
    unfreeze()
    gc.set_threshold(*threshold)


def test_the_heap_from_before_is_frozen_inside_the_block_and_given_back_after():
    before = cycle()  # garbage not collected yet when the block starts
    with collect_only_new_objects():
        assert gc.get_freeze_count() > 0
        made_inside = cycle()
        gc.collect()
        assert made_inside() is None  # what the block makes is collected as usual
        assert before() is not None  # what was there before is left alone
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert before() is None  # and collected once the block is over


def test_the_heap_is_given_back_when_the_block_fails():
    threshold = gc.get_threshold()
    with pytest.raises(RuntimeError), collect_only_new_objects():
        raise RuntimeError("the export failed")
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == threshold


def test_young_collections_are_rarer_inside_the_block_and_as_before_after():
    gc.set_threshold(700, 10, 10)
    with collect_only_new_objects():
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)
    gc.set_threshold(50_000, 5, 5)  # a process that asked for rarer collections keeps its own
    with collect_only_new_objects():
        assert gc.get_threshold() == (50_000, 5, 5)
    assert gc.get_threshold() == (50_000, 5, 5)


def test_overlapping_blocks_restore_the_collector_when_the_last_one_ends():
    gc.set_threshold(700, 10, 10)
    first, second = collect_only_new_objects(), collect_only_new_objects()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the other export still runs: its heap stays frozen, collections rare
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
    second.__exit__(None, None, None)
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == (700, 10, 10)


def untouched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every freeze and unfreeze the block would make (none, for a heap it must leave alone)."""
    calls: list[str] = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(gc, "unfreeze", lambda: calls.append("unfreeze"))
    return calls


def test_a_process_that_freezes_its_heap_itself_is_left_as_it_is(monkeypatch):
    gc.freeze()  # as Airflow's LocalExecutor does before it forks
    calls = untouched(monkeypatch)
    with collect_only_new_objects():
        Node()
    assert calls == []
    assert gc.get_freeze_count() > 0


def test_a_process_without_the_collector_is_left_as_it_is(monkeypatch):
    calls = untouched(monkeypatch)
    gc.disable()
    try:
        with collect_only_new_objects():
            pass
    finally:
        gc.enable()
    assert calls == []

"""The export's garbage-collection scope: the heap from before is frozen only while the export runs."""

from __future__ import annotations

import gc
import weakref

import pytest

from airflow_provider_orchestrator_audit.export.heap import collect_only_new_objects


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
    unfreeze = gc.unfreeze  # the real one, whatever a test puts in its place
    yield
    unfreeze()


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
    with pytest.raises(RuntimeError), collect_only_new_objects():
        raise RuntimeError("the export failed")
    assert gc.get_freeze_count() == 0


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

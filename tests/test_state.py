"""The typed conversation state: a stored document is decoded once, checked against the flows
there are now, and encoded back to the same document; what cannot be trusted is dropped with a
log line, and a document from before a part existed reads with that part at its default."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from dialogue.flows import Choice
from dialogue.state import CONFIRM, ConversationState, Form, Offered


@dataclass
class _Step:
    name: str


@dataclass
class _Flow:
    steps: list


FLOWS = {"order": _Flow([_Step("service"), _Step("address"), _Step("phone")])}


def test_a_full_state_round_trips():
    doc = {"version": 4, "flow": "order", "step": "address", "answers": {"service": "meal"},
           "history": ["service"], "retries": 1, "page": 0, "return_to": None, "params": {"community": 3},
           "updated_at": 1700000000.0,
           "offered": {"step": "address", "choices": [["a", "甲"], ["b", "乙", ["二"]]]},
           "paused": {"flow": "order", "step": CONFIRM, "answers": {"service": "repair"}, "history": [],
                      "return_to": None, "params": None, "updated_at": 1699999000.0, "restart_params": {"x": 1}},
           "pending": "stuck", "last_loc": [36.7, 119.1, 1700000000.0]}
    state = ConversationState.decode(doc, FLOWS)
    assert state.form.offered.choices[1] == Choice("b", "乙", ("二",))
    assert state.paused.restart_params == {"x": 1} and state.pending == "stuck"
    assert state.encode() == doc


def test_a_document_from_before_the_choices_and_times_were_kept_reads(caplog):
    with caplog.at_level(logging.WARNING, logger="volbot.dialogue"):
        state = ConversationState.decode({"version": 2, "flow": "order", "step": "service"}, FLOWS)
    assert state.form == Form("order", "service") and state.form.updated_at is None
    assert not caplog.records  # nothing was damaged: nothing to say


@pytest.mark.parametrize("damage, dropped", [
    ({"flow": "gone", "step": "x"}, "form"),
    ({"flow": "order", "step": "removed"}, "form"),
    ({"flow": "order", "step": "service", "answers": []}, "form"),
    ({"flow": "order", "step": "service", "updated_at": "soon"}, "form"),
    ({"flow": "order", "step": "service", "retries": -1}, "retries"),
    ({"flow": "order", "step": "service", "offered": {"step": "service", "choices": [[1]]}}, "offered"),
    ({"flow": "order", "step": "service", "history": ["service", "removed", 7]}, "form.history (in part)"),
    ({"paused": "garbage"}, "paused"),
    ({"paused": {"flow": "order"}}, "paused"),
    ({"pending": "sleep"}, "pending"),
    ({"last_loc": [1, "north", 2]}, "last_loc"),
])
def test_a_damaged_part_is_dropped_with_a_log_line(caplog, damage, dropped):
    with caplog.at_level(logging.WARNING, logger="volbot.dialogue"):
        state = ConversationState.decode({"version": 5, **damage}, FLOWS)
    assert state.version == 5
    assert any(dropped in r.getMessage() for r in caplog.records), caplog.text
    # What is left is a sound state: encoding it and reading it again says nothing more.
    caplog.clear()
    again = ConversationState.decode(state.encode(), FLOWS)
    assert again.encode() == state.encode() and not caplog.records


@pytest.mark.parametrize("doc", [None, [], "text", 7])
def test_anything_but_a_document_is_a_fresh_state(doc):
    assert ConversationState.decode(doc, FLOWS).encode() == {"version": 0}


def test_clear_keeps_the_version_for_the_compare_and_set():
    state = ConversationState(version=9, form=Form("order", "service"), pending="stuck",
                              paused=Form("order", "phone"), last_loc=(1.0, 2.0, 3.0))
    state.clear()
    assert state.encode() == {"version": 9}


def test_offered_choices_keep_their_aliases():
    offered = Offered("service", [Choice("meal", "助餐", ("吃饭",)), Choice("repair", "维修")])
    assert Offered.decode(offered.encode()) == offered

"""When the front door refuses work: only once the serving loop has run late a while."""

from __future__ import annotations

from resolver.front import Shedder


def test_the_door_sheds_only_after_the_loop_has_run_late_for_a_while() -> None:
    shedder = Shedder(late=0.005, very_late=0.025, standing=0.1)
    shedder.observe(0.0, 10.0)
    shedder.observe(0.5, 10.05)  # one long pause (a burst): nothing refused
    assert shedder.admit(10.05, cheap=False)
    for t in (10.1, 10.15, 10.2):  # late at every probe for more than 0.1 s
        shedder.observe(0.01, t)
    assert not shedder.admit(10.2, cheap=False)
    assert shedder.admit(10.2, cheap=True)  # late, not very late: cached answers go out
    for t in (10.25, 10.3):
        shedder.observe(0.03, t)
    assert not shedder.admit(10.3, cheap=True)
    shedder.observe(0.001, 10.31)  # on time again: everything is taken at once
    assert shedder.admit(10.31, cheap=False)


def test_lookups_are_refused_while_they_stand_in_a_queue() -> None:
    shedder = Shedder(standing=0.1, lookup_target=0.05)
    shedder.observe(0.0, 10.0)  # the loop itself stays on time throughout
    shedder.started(10.0)
    shedder.landed(0.2, 10.2)  # one slow lookup, none under way now: no queue
    shedder.observe(0.0, 10.2)
    assert shedder.admit_lookup(10.2)
    shedder.started(10.2)
    shedder.started(10.21)
    shedder.observe(0.0, 10.25)
    assert shedder.admit_lookup(10.25)  # slow so far, not for long
    shedder.observe(0.0, 10.35)
    assert not shedder.admit_lookup(10.35)  # none has landed within 50 ms for 100 ms
    assert shedder.admit(10.35, cheap=True)  # cached answers still go out
    assert shedder.admit(10.35, cheap=False)  # and the application's work: its own queue
    shedder.landed(0.01, 10.36)  # a quick one lands: the queue has drained
    shedder.observe(0.0, 10.36)
    assert shedder.admit_lookup(10.36)
    shedder.landed(0.3, 10.5)
    shedder.observe(0.0, 10.5)
    assert shedder.admit_lookup(10.5)  # nothing under way: the next one is taken

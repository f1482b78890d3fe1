"""The shared timers and suspicion rules (poe/protocol/pacemaker.py, PROTOCOL.md §4.12)."""
from poe.protocol.pacemaker import BACKOFF_MAX, RETRIES_BEFORE_SUSPECT, Pacemaker, RequestWatch


def test_the_timeout_doubles_on_a_view_without_progress_and_halves_after_fast_progress():
    p = Pacemaker(1.0)
    p.view_installed(10)
    p.leaving_view(10)                      # nothing executed in the view
    assert p.timeout_s == 2.0
    p.view_installed(10)
    p.executed(0.1)
    p.leaving_view(12)                      # progress, and not our own timer: no doubling
    assert p.timeout_s == 2.0
    p.executed(0.6)                         # slower than a quarter of 2 s: no decay
    p.stable()
    assert p.timeout_s == 2.0
    p.executed(0.4)
    p.stable()
    assert p.timeout_s == 1.0
    p.stable()
    assert p.timeout_s == 1.0               # never below the base
    for _ in range(3 * BACKOFF_MAX):
        p.fired()
        p.leaving_view(100)
    assert p.timeout_s == 2 ** BACKOFF_MAX


def test_a_forwarded_message_is_waited_for_until_it_or_its_client_s_share_executes():
    w = RequestWatch(share=3, limit=10)
    w.forward((7, 1), 0.0)
    w.forward((8, 1), 0.0)
    assert w.expired(0.5, 1.0) == 0
    w.executed((8, 1))                      # client 8's message: no longer waited for
    assert set(w.forwarded) == {(7, 1)}
    for t in (2, 3):
        w.executed((7, t))                  # two other messages of client 7: not its share
    assert w.expired(1.5, 1.0) == -1        # (7, 1) waited a timeout
    w.executed((7, 4))
    assert w.expired(1.5, 1.0) == 1 and not w.forwarded     # its share executed: released


def test_the_watch_is_bounded():
    w = RequestWatch(share=3, limit=4)
    for t in range(10):
        w.forward((1, t), 0.0)
        w.retry((2, t), 1, 0.0, 1.0, 0)
    assert len(w.forwarded) == 4 and len(w._retries) <= 4


def test_client_unserved_is_due_after_fresh_numbered_retries_over_a_timeout_once_per_view():
    w = RequestWatch(share=3, limit=10)
    key = (1, 5)
    assert w.retry(key, 1, 0.0, 1.0, 0) == "counted"
    assert w.retry(key, 1, 0.5, 1.0, 0) == "replayed"       # a copy of retry 1
    for attempt in range(2, RETRIES_BEFORE_SUSPECT):
        assert w.retry(key, attempt, 0.6, 1.0, 0) == "counted"
    assert w.retry(key, RETRIES_BEFORE_SUSPECT, 0.9, 1.0, 0) == "counted"   # < a timeout
    assert w.retry(key, RETRIES_BEFORE_SUSPECT + 1, 1.0, 1.0, 0) == "due"
    w.unserved(0)
    assert w.retry(key, RETRIES_BEFORE_SUSPECT + 2, 2.0, 1.0, 0) == "counted"   # once a view
    w.new_view()
    assert w.retry(key, 1, 3.0, 1.0, 1) == "counted"       # a new view: counted afresh

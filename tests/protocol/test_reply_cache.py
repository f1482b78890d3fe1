"""The replica's reply cache: bounded per client and in total, flooding evicts the flooder."""
from poe.protocol.poe.clients import PER_CLIENT_REPLIES, ReplyCache


def test_each_client_keeps_its_newest_answers_when_another_floods():
    cache = ReplyCache(size=50)
    for c in range(10):
        cache.put((c, 1), 0, c, b"answer %d" % c)
    for t in range(1, 1000):                       # client 99 floods
        cache.put((99, t), 0, 5, b"flood")
    assert len(cache) == 50
    assert all(cache.get((c, 1))[:3] == (0, c, b"answer %d" % c) for c in range(10))
    assert cache.get((99, 1)) is None and cache.get((99, 999))[:3] == (0, 5, b"flood")
    assert cache.evicted > 0


def test_per_client_window_and_total_bound():
    cache = ReplyCache(size=1000)
    for t in range(1, 200):
        cache.put((7, t), 0, t, b"x")
    assert len(cache) == PER_CLIENT_REPLIES
    assert cache.get((7, 199)) is not None and cache.get((7, 199 - PER_CLIENT_REPLIES)) is None
    cache.put((7, 199), 1, 300, b"y")              # replacing does not grow it
    assert len(cache) == PER_CLIENT_REPLIES and cache.get((7, 199))[:3] == (1, 300, b"y")


def test_drop_above_forgets_rolled_back_batches():
    cache = ReplyCache(size=100)
    for t, seq in ((1, 5), (2, 6), (3, 7)):
        cache.put((1, t), 0, seq, b"r")
    cache.put((2, 1), 0, 9, b"r")
    cache.drop_above(6)
    assert [cache.get((1, t)) is not None for t in (1, 2, 3)] == [True, True, False]
    assert cache.get((2, 1)) is None and len(cache) == 2


def test_an_answer_is_bound_to_its_message_signature():
    cache = ReplyCache(size=10)
    cache.put((1, 5), 0, 3, b"answer", b"s" * 64)
    cache.put((1, 6), 0, 3, b"restored")           # signature unknown (older store rows)
    assert ReplyCache.same_message(cache.get((1, 5)), b"s" * 64)
    assert not ReplyCache.same_message(cache.get((1, 5)), b"t" * 64)
    assert ReplyCache.same_message(cache.get((1, 6)), b"t" * 64)


def test_answers_of_messages_reusing_an_id_are_kept_apart_and_bounded():
    from poe.protocol.poe.clients import OTHER_ANSWERS_MAX

    cache = ReplyCache(size=10)
    cache.put((1, 5), 0, 3, b"first", b"s" * 64)
    cache.put_other((1, 5), 0, 4, b"other", b"t" * 64)
    assert cache.get((1, 5))[2] == b"first"                 # the first keeps its place
    assert cache.get_other((1, 5), b"t" * 64)[2] == b"other"
    assert cache.get_other((1, 5), b"u" * 64) is None        # a third message: nothing
    for t in range(OTHER_ANSWERS_MAX + 10):
        cache.put_other((2, t), 0, 5, b"x", b"v" * 64)
    assert cache.get_other((1, 5), b"t" * 64) is None        # the oldest went first
    assert cache.get_other((2, OTHER_ANSWERS_MAX + 9), b"v" * 64) is not None
    assert len(cache) == 1                                   # not counted with the answers


def test_a_client_keeps_its_newest_messages_by_id_whatever_the_write_order():
    """Its oldest message by request id goes first: a re-written answer (FINAL, a new view,
    a restart) keeps its place, one executed out of order is put in its place. On b62a8c9
    eviction went by write order: re-writing the answers of messages 1..10 after message
    11 (a FINAL refresh, after a power cut in swarm seed 5) made newer answers evict
    message 11 before message 10 ('assert [10] == [11]')."""
    cache = ReplyCache(size=1000)
    for t in range(1, 12):
        cache.put((7, t), 0, t, b"x")
    for t in range(1, 11):
        cache.put((7, t), 1, t, b"final")          # re-written: keep their places
    cache.put((7, 30), 0, 30, b"x")
    cache.put((7, 20), 0, 31, b"x")                # executed out of id order
    for t in range(100, 100 + PER_CLIENT_REPLIES - 3):     # 10 over the window
        cache.put((7, t), 0, t, b"x")
    assert len(cache) == PER_CLIENT_REPLIES and cache.evicted == 10
    # the oldest ids went: 1..10 (and nothing newer)
    assert [t for t in range(1, 12) if cache.get((7, t)) is not None] == [11]
    assert cache.get((7, 20)) is not None and cache.get((7, 30)) is not None
    cache.put((7, 200), 0, 200, b"x")
    assert cache.get((7, 11)) is None and cache.get((7, 20)) is not None

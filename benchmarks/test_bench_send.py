"""Coalesced sends (issue 15) against one ZeroMQ send per frame, in the same run.

What a replica's loop turn does with the frames it owes one peer: the runtime collects
them per destination during the turn and ``ReplicaTransport.send_peer`` joins them
(``coalesce``, up to ``transport.coalesce_bytes``) into as few ZeroMQ messages as it can;
the receiver splits them again (``split_frames``). The replaced way, one ``send`` per frame,
wakes ZeroMQ's I/O thread and pays the per-message cost once per frame.

Measured: one turn's worth of frames (a PROPOSE-sized frame and the SUPPORT / INFORM-sized
frames that follow it; 24 frames, ~9 KB) sent over a real DEALER -> ROUTER connection on
127.0.0.1 and all received, per round; the per-frame and coalesced paths run the same
frames. The benchmark's figure is the sender's and receiver's time together.
"""
from __future__ import annotations

import pytest
import zmq

from poe._core import codec
from poe.transport.zmq import coalesce, split_frames

FRAMES_PER_TURN = 24


def _client_messages(n: int) -> list[bytes]:
    return [codec.pack_client_message(1000 + i, [(i + 1, i, codec.OP_UPDATE, b"v" * 16)])
            + b"s" * 64 for i in range(n)]


def _frames() -> list[bytes]:
    out = [codec.seal(codec.encode_support(2, 3, 17 + i, bytes([i]) * 32, b"s" * 96),
                      b"m" * 32) for i in range(FRAMES_PER_TURN - 1)]
    propose = codec.seal(codec.encode_propose(0, 3, 17, _client_messages(20)), b"m" * 32)
    return [propose] + out         # a PROPOSE first, then SUPPORT-sized frames


@pytest.fixture(scope="module")
def pair():
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.IDENTITY, b"r1")
    dealer.connect(f"tcp://127.0.0.1:{port}")
    dealer.send(b"hello")
    router.recv_multipart()                     # connected both ways
    yield dealer, router
    dealer.close(0)
    router.close(0)
    ctx.term()


def _receive(router, expected_frames: int) -> int:
    got = 0
    while got < expected_frames:
        parts = router.recv_multipart()
        got += len(split_frames(parts[1]))
    return got


def per_frame_turn(dealer, router, frames):
    """The replaced way: one ZeroMQ send per frame."""
    for frame in frames:
        dealer.send(frame, zmq.NOBLOCK)
    return _receive(router, len(frames))


def coalesced_turn(dealer, router, frames):
    """The runtime's way: the turn's frames for one peer joined into as few messages as
    ``transport.coalesce_bytes`` (256 KiB by default) allows."""
    for message in coalesce(frames, 256 * 1024):
        dealer.send(message, zmq.NOBLOCK)
    return _receive(router, len(frames))


def test_both_ways_deliver_the_same_frames(pair):
    dealer, router = pair
    frames = _frames()
    assert per_frame_turn(dealer, router, frames) == len(frames)
    assert coalesced_turn(dealer, router, frames) == len(frames)
    joined = coalesce(frames, 256 * 1024)
    assert len(joined) == 1 and split_frames(joined[0]) == frames


@pytest.mark.benchmark(group="send-turn")
def test_send_turn_per_frame(benchmark, pair):
    dealer, router = pair
    frames = _frames()
    assert benchmark(per_frame_turn, dealer, router, frames) == len(frames)


@pytest.mark.benchmark(group="send-turn")
def test_send_turn_coalesced(benchmark, pair):
    dealer, router = pair
    frames = _frames()
    assert benchmark(coalesced_turn, dealer, router, frames) == len(frames)

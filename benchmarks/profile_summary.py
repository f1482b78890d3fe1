"""Summarise py-spy ``--format raw`` profiles of replicas by where the time goes.

    py-spy record -p PID -d 15 -r 200 -f raw -o primary.raw --nonblocking
    python benchmarks/profile_summary.py primary.raw backup.raw

Each sample is charged to the first category (top of the stack first) that names one of its
frames: BLS, Ed25519, MAC, ZeroMQ send/receive, waiting in poll, kv, protocol, runtime.
"Busy" shares leave out the samples spent waiting in poll.

Must never: guess (a sample that matches nothing is "other").
"""
from __future__ import annotations

import sys
from collections import Counter

CATEGORIES = [
    ("waiting in poll", ("Poller.poll",)),
    ("BLS (share sign, combine, certificate verify)", ("bls.py", "shamir.py")),
    ("Ed25519 (client signatures, checkpoints)", ("ed25519.py",)),
    ("MAC (keyed BLAKE2b)", ("mac.py",)),
    ("ZeroMQ send/receive", ("socket.py", "garbage.py")),
    ("kv snapshot at checkpoints", ("_snapshot_checkpoint", "snapshot_bytes")),
    ("kv execute", ("PoEReplica.execute",)),
    ("protocol (poe/protocol, poe/baselines)", ("/protocol/", "/baselines/", "<string>")),
    ("runtime and transport", ("/runtime/", "/transport/", "/bench/")),
]


def categorise(path: str) -> tuple[Counter, int]:
    counts: Counter = Counter()
    total = 0
    with open(path, encoding="utf-8") as handle:
        lines = handle.readlines()
    for line in lines:
        stack, _, n = line.rstrip().rpartition(" ")
        if not stack:
            continue
        samples = int(n)
        total += samples
        frames = stack.split(";")[::-1]            # innermost first
        for name, needles in CATEGORIES:
            if any(needle in frame for frame in frames[:1] for needle in needles) or (
                    name != "waiting in poll"
                    and any(needle in frame for frame in frames for needle in needles)
                    and name.startswith(("BLS", "Ed25519", "MAC", "ZeroMQ", "kv"))):
                counts[name] += samples
                break
        else:
            counts["other"] += samples
    return counts, total


def main(paths: list[str]) -> int:
    for path in paths:
        counts, total = categorise(path)
        busy = total - counts["waiting in poll"]
        print(f"{path}: {total} samples, {busy} busy")
        for name, _ in CATEGORIES + [("other", ())]:
            if name == "waiting in poll" or not counts[name]:
                continue
            print(f"  {100 * counts[name] / max(busy, 1):5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

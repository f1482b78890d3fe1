"""Transport: ZeroMQ sockets, framing, bounded queues, heartbeats and reconnection.

Nothing here knows the protocol beyond the frame envelope (docs/wire.md); authentication is
the protocol's job (MACs and signatures inside the frames).
"""

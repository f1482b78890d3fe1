"""Sans-IO protocol state machines: events in, actions out.

Must never import sockets, clocks, randomness, threads or file IO (tests/protocol enforce
it). The current time is always passed in; randomness, if ever needed, is a seeded value in
the configuration. The same objects run under the simulator (poe.sim) and the runtime.
"""

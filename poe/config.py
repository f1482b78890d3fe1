"""The configuration file of a poe deployment: every setting declared once, loaded and checked.

What it is for: one TOML file (``poe.toml``, written by ``poe keygen`` beside the key files)
holds every setting of the cluster and of the replica process: the protocol parameters every
replica must share (mode, batch size and timeout, window, checkpoint period, timeouts), the
initial YCSB data, the transport (frame size, queues, heartbeats, reconnection), the replica
process (sync policy, status interval) and the client side (retry, deadline). Each setting
is declared exactly once in ``SETTINGS`` with its type, default, unit and meaning; the
defaults file, the ``--set`` overrides, the start-up log and the checks all come from that
table. The public key file (``cluster.toml``: ids, hosts, replica and client ports, public
keys) stays the crypto layer's format; the configuration names it in ``cluster.keys``.
``load_config`` also accepts that key file directly (every setting then takes its default),
so ``poe replica --config keys/cluster.toml --id 0`` works on a fresh ``poe keygen`` output.

Every problem in a file or an override (unknown section or key, wrong type, value out of
range, unreadable or corrupt key file, impossible combination) is collected and reported at
once as one ``ConfigFileError`` whose message is one line naming the file and each setting.

Must never: read a secret key (only the path of the secret file is computed here), let a
file value through unchecked, or declare a setting twice.
"""
from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from poe._core import codec, kv
from poe._core.digest import genesis_hash
from poe.crypto.errors import CryptoError
from poe.crypto.keyfile import CLUSTER_FORMAT, Cluster, load_cluster
from poe.protocol.config import ConfigError, ProtocolConfig
from poe.protocol.poe.clients import PER_CLIENT_REPLIES

CONFIG_FORMAT = "poe-config/1"
CONFIG_FILE = "poe.toml"
FILE_BYTES_MAX = 1 << 20
MIB = 1 << 20
# the largest frame the protocol can send: header + MAX_BODY + signature
PROTOCOL_FRAME_MAX = codec.HEADER_SIZE + codec.MAX_BODY + codec.SIG_SIZE


class ConfigFileError(Exception):
    """Problems in a configuration file or override; ``str`` is one line naming each."""

    def __init__(self, where: str, problems: list[str]) -> None:
        self.where = where
        self.problems = problems
        super().__init__(f"{where}: " + "; ".join(problems))


@dataclass(frozen=True, slots=True)
class Setting:
    """One declared setting: ``section.name`` of type ``kind`` with ``default``."""

    section: str
    name: str
    kind: type
    default: Any
    unit: str
    meaning: str
    low: float | None = None          # inclusive bounds for numbers
    high: float | None = None
    choices: tuple = ()

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not acceptable, or None."""
        kind = self.kind
        if kind is float and type(value) is int:
            value = float(value)
        if type(value) is not kind:
            found = _KIND_NAMES.get(type(value), "a " + type(value).__name__)
            return f"expected {_KIND_NAMES[kind]}, found {found}"
        if kind is float and not math.isfinite(value):
            return "must be a finite number"
        if self.choices and value not in self.choices:
            return f"must be one of {', '.join(repr(c) for c in self.choices)}, found {value!r}"
        if self.low is not None and value < self.low:
            return f"must be at least {_num(self.low)}{self._unit()}, found {value!r}"
        if self.high is not None and value > self.high:
            return f"must be at most {_num(self.high)}{self._unit()}, found {value!r}"
        return None

    def _unit(self) -> str:
        return f" {self.unit}" if self.unit and self.unit not in ("-", "path") else ""


_KIND_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
               dict: "a table", list: "an array"}


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


S = Setting
SETTINGS: tuple[Setting, ...] = (
    # ---- cluster: where the keys are
    S("cluster", "keys", str, "cluster.toml", "path",
      "public key file from `poe keygen` (replica ids, hosts, replica_port and client_port, "
      "public keys); relative to this file"),
    S("cluster", "secrets_dir", str, ".", "path",
      "directory holding replica-<i>.secret.toml and client-<j>.secret.toml (mode 0600); "
      "relative to this file"),
    # ---- protocol: must be identical on every replica and client
    S("protocol", "protocol", str, "poe", "-",
      "poe: Proof-of-Execution; pbft: the PBFT baseline on the same fabric (needs mode = "
      "\"mac\"; clients then accept f+1 matching replies)", choices=("poe", "pbft")),
    S("protocol", "mode", str, "ts", "-",
      "ts: threshold-signature certificates (BLS); mac: all-to-all SUPPORT with MACs",
      choices=("ts", "mac")),
    S("protocol", "client_auth", str, "ed25519", "-",
      "how a client authenticates its requests: one Ed25519 signature per client message "
      "(PROTOCOL.md §1.5); MAC authenticators are not implemented", choices=("ed25519",)),
    S("protocol", "batch_size", int, 200, "requests",
      "requests per batch; the primary closes a batch when it is full", 1, 4096),
    S("protocol", "batch_timeout_s", float, 0.002, "s",
      "close a non-empty batch after this long even if it is not full", 0.0, 10.0),
    S("protocol", "window", int, 128, "batches",
      "L: batches between the low and the high watermark (at least 2 x checkpoint_period)",
      2, 1 << 20),
    S("protocol", "checkpoint_period", int, 64, "batches",
      "K: a CHECKPOINT after every K-th executed batch", 1, 1 << 20),
    S("protocol", "retransmit_timeout_s", float, 0.5, "s",
      "the primary re-sends PROPOSEs and backups FETCH missing slots after this long",
      0.001, 600.0),
    S("protocol", "view_change_timeout_s", float, 1.0, "s",
      "T_exec / T_req base: suspect the primary when nothing executes for this long (adapts:"
      " see Timers below)", 0.01, 3600.0),
    S("protocol", "new_view_timeout_s", float, 2.0, "s",
      "T_nv base: a view change that does not finish in this long moves on (doubles each "
      "time)", 0.01, 3600.0),
    S("protocol", "reply_cache_size", int, 10_000, "messages",
      "INFORMs kept to answer client retries exactly once: each client's 64 newest "
      "messages by request id, so at least 64 x the key file's clients (checked at load; "
      "`poe cluster` sizes it)", 1, 10_000_000),
    S("protocol", "pending_requests_max", int, 100_000, "messages",
      "client messages the primary queues at most; beyond it requests are dropped",
      1, 10_000_000),
    S("protocol", "client_pending_max", int, 1024, "messages",
      "one client's share of the primary's queue; beyond it that client's messages are "
      "dropped (keep it above the messages a client keeps outstanding)", 1, 10_000_000),
    S("protocol", "forwarded_max", int, 10_000, "messages",
      "client retries a backup forwards and tracks for T_req at most", 1, 10_000_000),
    S("protocol", "zero_payload", bool, False, "-",
      "execute every request as a no-op (the paper's zero payload experiment)"),
    # ---- data: the YCSB table every replica loads at start (must be identical everywhere)
    S("data", "record_count", int, 10_000, "records",
      "YCSB records 0..record_count-1 loaded at start-up", 0, 1 << 32),
    S("data", "value_size", int, 100, "bytes",
      "size of each loaded value (and of the values the benchmark writes)", 0,
      codec.MAX_VALUE),
    S("data", "seed", int, 1, "-", "seed of the loaded values", 0, (1 << 64) - 1),
    # ---- transport
    S("transport", "bind_host", str, "", "-",
      "address the replica binds; empty: the replica's host in the key file"),
    S("transport", "max_frame_bytes", int, PROTOCOL_FRAME_MAX, "bytes",
      "largest message accepted; larger ones are counted and dropped, and a peer sending "
      "more than twice this is disconnected by ZeroMQ (ZMQ_MAXMSGSIZE)", 64 * 1024, 256 * MIB),
    S("transport", "coalesce_bytes", int, 256 * 1024, "bytes",
      "frames for one peer produced in one loop turn are sent as one message up to this size",
      1024, 64 * MIB),
    S("transport", "flush_interval_s", float, 0.002, "s",
      "while a loop turn runs, the frames it has produced leave at least this often "
      "(durable first): a reply or vote made early in a turn does not wait for the turn's "
      "later crypto (a threshold combine or certificate check costs ~1 ms); 0: after "
      "every message (more sends, more CPU). Not with replica.sync_policy 'batch', where "
      "each flush is an fsync: there a turn's frames leave at its end", 0.0, 1.0),
    S("transport", "send_queue_messages", int, 1000, "messages",
      "ZMQ_SNDHWM per peer: beyond it (or while the peer is down) a send is dropped and "
      "counted; the protocol retransmits", 1, 1_000_000),
    S("transport", "receive_queue_messages", int, 1000, "messages",
      "ZMQ_RCVHWM per connection: ZeroMQ stops reading a peer whose queue is full",
      1, 1_000_000),
    S("transport", "drain_messages", int, 256, "messages",
      "messages taken from one socket per loop turn before the others get a turn", 1, 100_000),
    S("transport", "heartbeat_interval_s", float, 1.0, "s",
      "ZMTP heartbeat (ZMQ_HEARTBEAT_IVL) on every connection", 0.01, 3600.0),
    S("transport", "heartbeat_timeout_s", float, 5.0, "s",
      "a connection without traffic or heartbeat reply for this long is closed and "
      "re-opened (ZMQ_HEARTBEAT_TIMEOUT / TTL)", 0.02, 3600.0),
    S("transport", "reconnect_interval_s", float, 0.1, "s",
      "first reconnection attempt after a peer goes away (ZMQ_RECONNECT_IVL)", 0.001, 60.0),
    S("transport", "reconnect_interval_max_s", float, 2.0, "s",
      "reconnection back-off cap (ZMQ_RECONNECT_IVL_MAX)", 0.001, 3600.0),
    # ---- replica process
    S("replica", "data_dir", str, "", "path",
      "directory of the durable stores (replica i uses <data_dir>/replica-<i>/ledger.db); "
      "relative to this file; empty: nothing is persisted and a restarted replica starts "
      "from genesis (tests and benchmarks only)"),
    S("replica", "sync_policy", str, "batch", "-",
      "when the store is fsynced (with data_dir set): 'batch': every loop turn's writes "
      "(votes, blocks) before its messages leave, survives power loss; 'checkpoint': "
      "written before messages leave (survives a process crash) but fsynced only at each "
      "stable checkpoint; 'none': never fsynced (benchmarks). See docs/storage.md",
      choices=("batch", "checkpoint", "none")),
    S("replica", "metrics_port", int, 0, "-",
      "Prometheus metrics endpoint: replica i serves http://metrics_host:(metrics_port + i)"
      "/metrics; 0: no endpoint", 0, 65535),
    S("replica", "metrics_host", str, "127.0.0.1", "-",
      "address the metrics endpoint binds (0.0.0.0: every interface)"),
    S("replica", "status_interval_s", float, 10.0, "s",
      "a status log line (view, executed, rates, drops, queues, memory) this often",
      0.1, 86400.0),
    S("replica", "log_level", str, "info", "-", "least severe log level written",
      choices=("debug", "info", "warning", "error")),
    # ---- client side (poe client, poe bench)
    S("client", "retry_timeout_s", float, 1.0, "s",
      "re-send a client message to every replica after this long (doubles each time)",
      0.001, 600.0),
    S("client", "retry_timeout_max_s", float, 8.0, "s", "retry back-off cap", 0.001, 3600.0),
    S("client", "deadline_s", float, 30.0, "s",
      "give up on a client message after this long: outcome unknown", 0.01, 86400.0),
    S("client", "connect_timeout_s", float, 10.0, "s",
      "how long a client waits for its connections to the replicas at start (once nf "
      "are up, the primary among them, it waits at most 1 s more for the rest)", 0.1,
      3600.0),
)
del S

_BY_KEY = {s.key: s for s in SETTINGS}
SECTIONS = tuple(dict.fromkeys(s.section for s in SETTINGS))
assert len(_BY_KEY) == len(SETTINGS), "a setting is declared twice"


@dataclass(frozen=True)
class Config:
    """A loaded and checked configuration: settings by section, the key file, the paths."""

    path: str
    values: dict[str, Any]            # "section.name" -> value
    sources: dict[str, str]           # "section.name" -> "default" | "file" | "override"
    cluster: Cluster
    base_dir: Path

    def __getattr__(self, section: str) -> SimpleNamespace:
        if section not in SECTIONS:
            raise AttributeError(section)
        return SimpleNamespace(**{k.split(".", 1)[1]: v for k, v in self.values.items()
                                  if k.startswith(section + ".")})

    def get(self, key: str) -> Any:
        return self.values[key]

    @property
    def n(self) -> int:
        return self.cluster.n

    def protocol_config(self, kv_seed: int = 0) -> ProtocolConfig:
        """The ProtocolConfig every replica and client of this cluster shares (kv_seed is the
        per-process hash-flood seed, never part of the state)."""
        p = self.protocol
        return ProtocolConfig(
            n=self.cluster.n, protocol=p.protocol, mode=p.mode, batch_size=p.batch_size,
            batch_timeout_s=p.batch_timeout_s, window=p.window,
            checkpoint_period=p.checkpoint_period, retransmit_timeout_s=p.retransmit_timeout_s,
            reply_cache_size=p.reply_cache_size, pending_requests_max=p.pending_requests_max,
            client_pending_max=p.client_pending_max,
            view_change_timeout_s=p.view_change_timeout_s,
            new_view_timeout_s=p.new_view_timeout_s, forwarded_max=p.forwarded_max,
            kv_seed=kv_seed, zero_payload=p.zero_payload, genesis=self.genesis())

    def genesis(self) -> bytes:
        """H(B_0) from the key file and the settings that define the state machine, so every
        replica built from the same files agrees and a replica started with another mode or
        data load cannot join the others' checkpoints."""
        c = self.cluster
        config_id = self.genesis_config()
        keys = bytes(c.bls_group_public_key) + b"".join(
            r.ed25519_public_key + r.bls_share_public_key for r in c.replicas)
        return genesis_hash(config_id, 0, keys)

    def genesis_config(self) -> bytes:
        """The settings H(B_0) is made of, as text (a store keeps it, so a mismatch can say
        which setting differs: poe.storage.store.describe_mismatch)."""
        c = self.cluster
        return (f"{CONFIG_FORMAT}|cluster={c.cluster_id}|n={c.n}|mode={self.protocol.mode}"
                f"|records={self.data.record_count}|value={self.data.value_size}"
                f"|seed={self.data.seed}|zero={int(self.protocol.zero_payload)}"
                + (f"|protocol={self.protocol.protocol}"
                   if self.protocol.protocol != "poe" else "")).encode()

    def secret_path(self, role: str, party_id: int) -> Path:
        """Where the secret file of ``role`` ("replica" / "client") ``party_id`` lives."""
        return _resolve(self.base_dir, self.values["cluster.secrets_dir"]) / \
            f"{role}-{party_id}.secret.toml"

    def data_dir(self, replica_id: int) -> Path:
        """Where replica ``replica_id`` keeps its store (``replica.data_dir`` must be set)."""
        return _resolve(self.base_dir, self.values["replica.data_dir"]) / \
            f"replica-{replica_id}"

    def effective(self) -> dict[str, Any]:
        """Every setting with its value (for the start-up log and benchmark records)."""
        return dict(self.values)

    def non_defaults(self) -> dict[str, Any]:
        """Settings whose value differs from the declared default."""
        return {k: v for k, v in self.values.items() if v != _BY_KEY[k].default}


def _resolve(base: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else base / path


def parse_override(text: str) -> tuple[str, Any]:
    """``section.name=value`` (value in TOML syntax; a bare word is a string)."""
    if "=" not in text:
        raise ConfigFileError("--set", [f"{text!r}: expected section.name=value"])
    key, raw = text.split("=", 1)
    key = key.strip()
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def load_config(path: str | os.PathLike[str],
                overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Load ``path`` (a poe.toml, or a bare key file), apply ``overrides`` and check
    everything. Raises ``ConfigFileError`` listing every problem found."""
    where = str(path)
    table = _read(Path(path))
    base = Path(path).resolve().parent
    problems: list[str] = []
    values: dict[str, Any] = {s.key: s.default for s in SETTINGS}
    sources = {s.key: "default" for s in SETTINGS}
    keys_path: Path
    if table.get("format") == CLUSTER_FORMAT:
        # a bare key file from `poe keygen`: defaults for every setting
        keys_path = Path(path)
        values["cluster.keys"] = str(Path(path).resolve())
        values["cluster.secrets_dir"] = str(base)
    else:
        _merge_file(table, values, sources, problems)
        keys_path = _resolve(base, values["cluster.keys"]) \
            if isinstance(values["cluster.keys"], str) else Path("?")
    for text in overrides:
        try:
            key, value = parse_override(text)
        except ConfigFileError as exc:
            problems.extend(exc.problems)
            continue
        if key not in _BY_KEY:
            problems.append(f"--set {key}: unknown setting{_suggest(key)}")
            continue
        values[key] = value
        sources[key] = "override"
    for setting in SETTINGS:
        problem = setting.problem(values[setting.key])
        if problem is not None:
            origin = "--set " if sources[setting.key] == "override" else ""
            problems.append(f"{origin}{setting.key} = {values[setting.key]!r}: {problem}")
        elif setting.kind is float:
            values[setting.key] = float(values[setting.key])
    if problems:
        raise ConfigFileError(where, problems)
    _cross_checks(values, problems)
    if problems:
        raise ConfigFileError(where, problems)
    try:
        cluster = load_cluster(keys_path)
    except CryptoError as exc:
        raise ConfigFileError(where, [f"cluster.keys: {exc}"]) from None
    config = Config(where, values, sources, cluster, base)
    _cluster_checks(config, problems)
    if problems:
        raise ConfigFileError(where, problems)
    return config


def _read(path: Path) -> dict[str, Any]:
    where = str(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(FILE_BYTES_MAX + 1)
    except OSError as exc:
        raise ConfigFileError(where, [f"cannot read: {exc.strerror or exc}"]) from None
    if len(data) > FILE_BYTES_MAX:
        raise ConfigFileError(where, [f"larger than {FILE_BYTES_MAX} bytes"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigFileError(where, ["not UTF-8 text"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(where, [f"not valid TOML: {exc}"]) from None


def _merge_file(table: dict[str, Any], values: dict[str, Any], sources: dict[str, str],
                problems: list[str]) -> None:
    fmt = table.get("format")
    if fmt != CONFIG_FORMAT:
        problems.append(f"format = {fmt!r}: expected {CONFIG_FORMAT!r} (a poe.toml written by "
                        f"`poe keygen`) or a key file with format = {CLUSTER_FORMAT!r}")
    for section, body in table.items():
        if section == "format":
            continue
        if section not in SECTIONS:
            problems.append(f"[{section}]: unknown section (known: {', '.join(SECTIONS)})")
            continue
        if type(body) is not dict:
            problems.append(f"{section}: expected a table, found {_KIND_NAMES.get(type(body))}")
            continue
        for name, value in body.items():
            key = f"{section}.{name}"
            if key not in _BY_KEY:
                problems.append(f"{key}: unknown setting{_suggest(key)}")
                continue
            values[key] = value
            sources[key] = "file"


def _suggest(key: str) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(_BY_KEY), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _cross_checks(values: dict[str, Any], problems: list[str]) -> None:
    if values["protocol.window"] < 2 * values["protocol.checkpoint_period"]:
        problems.append(f"protocol.window = {values['protocol.window']}: must be at least 2 x "
                        f"protocol.checkpoint_period ({2 * values['protocol.checkpoint_period']})")
    if values["transport.heartbeat_timeout_s"] <= values["transport.heartbeat_interval_s"]:
        problems.append("transport.heartbeat_timeout_s must exceed "
                        "transport.heartbeat_interval_s")
    if values["transport.reconnect_interval_max_s"] < values["transport.reconnect_interval_s"]:
        problems.append("transport.reconnect_interval_max_s must be at least "
                        "transport.reconnect_interval_s")
    if values["client.retry_timeout_max_s"] < values["client.retry_timeout_s"]:
        problems.append("client.retry_timeout_max_s must be at least client.retry_timeout_s")
    if values["transport.coalesce_bytes"] > values["transport.max_frame_bytes"]:
        problems.append("transport.coalesce_bytes must not exceed transport.max_frame_bytes")


def snapshot_bytes(record_count: int, value_size: int, clients: int) -> int:
    """Size of a kv snapshot (poe/_core/kv.pyx, version 2) of the loaded table, every client
    of the key file in it (u32 client | u64 max_t | a bitmap of kv.WINDOW bits each)."""
    client_record = 4 + 8 + kv.WINDOW // 8
    return 16 + 8 + 8 + 8 + 32 + record_count * (10 + value_size) + clients * client_record \
        + 32


def _cluster_checks(config: Config, problems: list[str]) -> None:
    try:
        config.protocol_config().validate()
    except ConfigError as exc:
        problems.append(str(exc))
    data = config.data
    snap = snapshot_bytes(data.record_count, data.value_size, len(config.cluster.clients))
    limit = min(codec.MAX_BODY - 64, config.transport.max_frame_bytes - 128)
    if snap > limit:
        problems.append(
            f"data.record_count = {data.record_count} x data.value_size = {data.value_size}: "
            f"the state snapshot ({snap} bytes) would not fit one STATE-REPLY frame "
            f"({limit} bytes), so a lagging replica could never catch up; use fewer records "
            "or smaller values")
    clients = len(config.cluster.clients)
    answers = clients * PER_CLIENT_REPLIES
    if config.protocol.reply_cache_size < answers:
        # a client keeps its messages within its 64 newest (PoEClient's ANSWER_WINDOW) so
        # that an answer it still awaits stays cached; a cache too small for every client's
        # 64 evicts such answers, and an executed message is never ordered again (§4.13)
        problems.append(
            f"protocol.reply_cache_size = {config.protocol.reply_cache_size}: the cluster file "
            f"lists {clients} clients and replicas keep each one's {PER_CLIENT_REPLIES} newest "
            f"answers; set it to at least {clients} x {PER_CLIENT_REPLIES} = {answers}, or "
            "retried messages may go unanswered")


# ---------------------------------------------------------------------------------------------
# writing a configuration file
# ---------------------------------------------------------------------------------------------

def _toml_value(value: Any) -> str:
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if type(value) is float:
        return repr(value)
    return str(value)


def render_config(values: dict[str, Any] | None = None, header: str = "") -> str:
    """A complete poe.toml: every setting with its value (default unless given in
    ``values``, keyed "section.name"), unit and meaning as comments."""
    values = values or {}
    unknown = set(values) - set(_BY_KEY)
    if unknown:
        raise KeyError(f"unknown settings {sorted(unknown)}")
    lines = ["# poe configuration: cluster, protocol, transport, replica and client settings.",
             "# Every setting is listed with its default; `poe replica --config THIS --id N`.",
             "# Override one for a single run with --set section.name=value."]
    if header:
        lines += [f"# {line}" for line in header.splitlines()]
    lines.append(f'format = "{CONFIG_FORMAT}"')
    for section in SECTIONS:
        lines += ["", f"[{section}]"]
        for s in SETTINGS:
            if s.section != section:
                continue
            unit = f" [{s.unit}]" if s.unit not in ("-",) else ""
            meaning = s.meaning
            while meaning:
                cut = meaning if len(meaning) <= 92 else meaning[:meaning.rfind(" ", 0, 92)]
                lines.append(f"# {cut}")
                meaning = meaning[len(cut):].lstrip()
            if s.choices:
                lines.append(f"#   one of: {', '.join(_toml_value(c) for c in s.choices)}")
            value = values.get(s.key, s.default)
            lines.append(f"{s.name} = {_toml_value(value)}{'  #' + unit if unit else ''}")
    return "\n".join(lines) + "\n"


def describe_settings() -> list[tuple[str, str, str, str, str]]:
    """(key, type, default, unit, meaning) of every setting (docs, ``--help``)."""
    return [(s.key, s.kind.__name__, _toml_value(s.default), s.unit, s.meaning)
            for s in SETTINGS]


def reference_markdown() -> str:
    """docs/configuration.md: the table of every setting (generated from ``SETTINGS``)."""
    lines = ["# Configuration reference", "",
             ("Generated from `poe.config.SETTINGS` by `python -m poe.config` (a test checks "
              "it is current)."),
             ("Every setting lives in `poe.toml` (written by `poe keygen`) under its section; "
              "`--set section.name=value` overrides one for a run. The key file `cluster.toml` "
              "holds the replica ids, hosts, `replica_port` / `client_port` and public keys."),
             ""]
    for section in SECTIONS:
        lines += [f"## [{section}]", "", "| setting | type | default | unit | meaning |",
                  "| --- | --- | --- | --- | --- |"]
        for s in SETTINGS:
            if s.section == section:
                meaning = s.meaning.replace("|", "\\|")
                if s.choices:
                    meaning += f" (one of {', '.join(f'`{c}`' for c in s.choices)})"
                lines.append(f"| `{s.name}` | {s.kind.__name__} | `{_toml_value(s.default)}` "
                             f"| {s.unit} | {meaning} |")
        lines.append("")
    lines += TIMERS_DOC
    return "\n".join(lines)


TIMERS_DOC = [
    "## Timers",
    "",
    "`protocol.view_change_timeout_s` is the *base* of the progress timeout (T_exec, and",
    "T_req for a client retry a backup forwarded; PROTOCOL.md §4.12). Each replica doubles",
    "it when it leaves a view in which nothing executed or in which its own progress timer",
    "fired (once per view, at most 2^6 times the base), and halves it again after a",
    "checkpoint interval in which every position executed in under a quarter of the current",
    "timeout (`poe/protocol/pacemaker.py`). The new-view timer T_nv is",
    "`protocol.new_view_timeout_s` x 2^a, `a` counting consecutive view changes that did not",
    "complete, reset by the first execution in a new view (§4.7). `retransmit_timeout_s`",
    "paces retransmissions only; it never leads to suspicion.",
    "",
    "With a synchronous but slow network (one-way delay d close to the base) a replica",
    "changes views at most about log2(batch latency / base) + 2 times — until its timeout",
    "exceeds the time a batch takes (3 one-way delays for PoE-TS, 2 for PoE-MAC, 3 for PBFT)",
    "— and then not again while the network stays as it is: at d = 0.9 x base, n = 4 and 7,",
    "PoE-TS changed views twice, PoE-MAC never, PBFT at most four times in 120 simulated",
    "seconds (`tests/sim/test_slow_network.py`).",
    "",
]


def write_config(path: str | os.PathLike[str], values: dict[str, Any] | None = None,
                 header: str = "", force: bool = False) -> Path:
    """Write ``render_config(values)`` to ``path`` (0644); refuses to overwrite unless
    ``force``."""
    target = Path(path)
    text = render_config(values, header)
    flags = os.O_CREAT | os.O_WRONLY | os.O_TRUNC | (0 if force else os.O_EXCL)
    fd = os.open(target, flags, 0o644)
    try:
        os.write(fd, text.encode("utf-8"))
    finally:
        os.close(fd)
    return target


if __name__ == "__main__":
    print(reference_markdown(), end="")

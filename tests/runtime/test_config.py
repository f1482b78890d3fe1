"""poe.config: every setting declared once, defaults file round trip, one error per problem."""
from __future__ import annotations

import re

import pytest

from poe._core import codec, kv
from poe.config import (
    CONFIG_FORMAT,
    SETTINGS,
    ConfigFileError,
    load_config,
    parse_override,
    render_config,
    snapshot_bytes,
    write_config,
)
from poe.crypto.dealer import deal_cluster, write_keys


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    directory = tmp_path_factory.mktemp("keys")
    write_keys(directory, deal_cluster(4, 3, base_port=41000))
    write_config(directory / "poe.toml")
    return directory


def test_every_setting_has_type_default_unit_and_meaning():
    keys = [s.key for s in SETTINGS]
    assert len(keys) == len(set(keys))
    for s in SETTINGS:
        assert s.unit and len(s.meaning) > 15, s.key
        assert s.problem(s.default) is None, s.key
        assert re.fullmatch(r"[a-z_]+", s.name)
        # names carry their unit last
        if s.unit == "s":
            assert s.name.endswith("_s"), s.key


def test_rendered_defaults_load_back_to_the_defaults(keys):
    config = load_config(keys / "poe.toml")
    assert config.sources == {s.key: "file" for s in SETTINGS}
    assert config.non_defaults() == {}
    for s in SETTINGS:
        assert config.get(s.key) == s.default
    assert config.protocol_config().validate().n == 4
    assert config.secret_path("replica", 2) == keys / "replica-2.secret.toml"
    text = render_config()
    assert f'format = "{CONFIG_FORMAT}"' in text
    assert all(len(line) <= 100 for line in text.splitlines())


def test_a_bare_key_file_is_a_configuration_with_defaults(keys):
    config = load_config(keys / "cluster.toml")
    assert config.protocol.mode == "ts" and config.n == 4
    assert config.secret_path("client", 1) == keys / "client-1.secret.toml"


def test_genesis_is_deterministic_and_binds_mode_and_data(keys):
    a = load_config(keys / "poe.toml").genesis()
    assert a == load_config(keys / "poe.toml").genesis()
    assert a != load_config(keys / "poe.toml", ["protocol.mode=mac"]).genesis()
    assert a != load_config(keys / "poe.toml", ["data.seed=2"]).genesis()
    assert a == load_config(keys / "poe.toml", ["protocol.batch_timeout_s=0.01"]).genesis()


def test_overrides_are_parsed_as_toml_or_words(keys):
    assert parse_override("protocol.batch_size=50") == ("protocol.batch_size", 50)
    assert parse_override("protocol.mode=mac") == ("protocol.mode", "mac")
    assert parse_override("protocol.zero_payload=true") == ("protocol.zero_payload", True)
    config = load_config(keys / "poe.toml", ["protocol.batch_timeout_s=1", "data.value_size=8"])
    assert config.protocol.batch_timeout_s == 1.0 and type(config.protocol.batch_timeout_s) \
        is float
    assert config.non_defaults() == {"protocol.batch_timeout_s": 1.0, "data.value_size": 8}
    assert config.sources["data.value_size"] == "override"


def test_every_problem_is_reported_in_one_line(tmp_path, keys):
    text = (keys / "poe.toml").read_text()
    text = text.replace("batch_size = 200", "batch_size = -1")
    text = text.replace("heartbeat_interval_s = 1.0", 'heartbeat_interval_s = "soon"')
    text = text.replace("[replica]", "[replica]\nmystery = 1")
    text = text.replace('keys = "cluster.toml"', f'keys = "{keys}/cluster.toml"')
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    with pytest.raises(ConfigFileError) as caught:
        load_config(bad)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(bad))
    assert "protocol.batch_size = -1: must be at least 1" in message
    assert "transport.heartbeat_interval_s = 'soon': expected a number" in message
    assert "replica.mystery: unknown setting" in message
    assert len(caught.value.problems) == 3


@pytest.mark.parametrize("override,expect", [
    ("protocol.window=64", "at least 2 x protocol.checkpoint_period"),
    ("transport.heartbeat_timeout_s=0.5", "heartbeat_timeout_s must exceed"),
    ("data.record_count=1000000", "would not fit one STATE-REPLY frame"),
    ("protocol.reply_cache_size=191", "set it to at least 3 x 64 = 192"),
    ("protocol.nonsense=1", "unknown setting"),
    ("no-equals-sign", "expected section.name=value"),
    ("protocol.zero_payload=1", "expected a boolean"),
])
def test_cross_checks(keys, override, expect):
    with pytest.raises(ConfigFileError, match=re.escape(expect)):
        load_config(keys / "poe.toml", [override])


def test_unreadable_and_broken_files(tmp_path, keys):
    with pytest.raises(ConfigFileError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigFileError, match="not UTF-8"):
        load_config(broken)
    broken.write_text('format = "poe-config/1"\n[protocol\n')
    with pytest.raises(ConfigFileError, match="not valid TOML"):
        load_config(broken)
    other = tmp_path / "other.toml"
    other.write_text('format = "something-else"\n')
    with pytest.raises(ConfigFileError, match="expected 'poe-config/1'"):
        load_config(other)
    missing_keys = tmp_path / "nokeys.toml"
    missing_keys.write_text(render_config({"cluster.keys": "nowhere.toml"}))
    with pytest.raises(ConfigFileError, match="cluster.keys: .*nowhere.toml"):
        load_config(missing_keys)


def test_write_config_refuses_to_overwrite(tmp_path):
    write_config(tmp_path / "poe.toml")
    with pytest.raises(FileExistsError):
        write_config(tmp_path / "poe.toml")
    write_config(tmp_path / "poe.toml", {"protocol.mode": "mac"}, force=True)
    assert 'mode = "mac"' in (tmp_path / "poe.toml").read_text()
    with pytest.raises(KeyError):
        render_config({"protocol.unknown": 1})


def test_configuration_reference_is_current():
    from pathlib import Path

    from poe.config import reference_markdown

    doc = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    assert doc.read_text() == reference_markdown(), \
        "docs/configuration.md is stale: run `python -m poe.config > docs/configuration.md`"



def test_the_snapshot_size_check_counts_every_clients_window():
    """The check must follow the kv's snapshot layout (version 2: 140 bytes per client,
    kv.WINDOW bits of window each), or a key file with many clients passes it while its
    replicas' snapshots outgrow a STATE-REPLY frame (it counted 20 bytes, version 1's)."""
    store = kv.KVStore()
    store.load_sequential(50, 8, 1)
    clients = 7
    messages = [codec.pack_client_message(c, [(0, c, codec.OP_UPDATE, b"v" * 8)]) + bytes(64)
                for c in range(clients)]
    store.execute(1, codec.Batch.from_messages(messages))
    assert len(store.snapshot()) == snapshot_bytes(50, 8, clients)

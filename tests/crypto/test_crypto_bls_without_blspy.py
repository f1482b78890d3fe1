"""poe on pyblst alone, as installed on CPython 3.13 (blspy has no wheels there): a fresh
interpreter in which ``import blspy`` fails (``sys.modules["blspy"] = None`` before poe is
imported) deals keys with ``poe keygen``, loads and checks the key files (proofs of
possession, the sharing polynomial), signs shares, combines and verifies certificates of both
kinds, names a bad share and a bad proof of possession, and refuses POE_BLS_BACKEND=blspy with
one clear line. Runs wherever pyblst is installed, blspy or not."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("pyblst", reason="pyblst is not installed: the blspy-less install it "
                    "simulates depends on it")

SCRIPT = textwrap.dedent('''
    import os
    import sys
    sys.modules["blspy"] = None        # blspy not installed: any import of it fails
    os.environ.pop("POE_BLS_BACKEND", None)
    from pathlib import Path

    from poe.cli.main import main
    from poe.crypto import (CombineError, CryptoError, KeyFileError, bls_backend, load_backend,
                            load_cluster, load_secret, load_suite, replica, support_statement)
    from poe.crypto.bls import installed_backends, select_backend
    from poe.crypto.dealer import secret_file_name

    assert installed_backends() == ("pyblst",), installed_backends()
    assert bls_backend() == "pyblst"
    out = Path(sys.argv[1])
    assert main(["keygen", "--replicas", "4", "--clients", "1", "--out", str(out)]) == 0
    cluster = load_cluster(out / "cluster.toml")
    secrets = [load_secret(out / secret_file_name(replica(i)), cluster) for i in range(4)]
    statement = support_statement(2, 5, bytes(range(32)))
    for kind in ("bls", "bls-multi"):
        suites = [load_backend(kind, cluster, secret) for secret in secrets]
        shares = {i: suites[i].threshold_signer.share_sign(statement) for i in range(4)}
        for i, share in shares.items():
            assert suites[0].threshold.verify_share(i, statement, share), (kind, i)
            assert not suites[0].threshold.verify_share((i + 1) % 4, statement, share)
        cert = suites[1].threshold.combine({i: shares[i] for i in (0, 2, 3)}, statement)
        observer = load_backend(kind, cluster).threshold      # no secret: verifier only
        assert type(observer).__module__ == "poe.crypto.bls_pyblst", type(observer)
        assert observer.verify_cert(cert, statement), kind
        assert not observer.verify_cert(cert, statement[:-1] + b"x"), kind
        try:
            suites[0].threshold.combine({0: shares[0], 2: shares[1], 3: shares[3]}, statement)
        except CombineError as exc:
            assert exc.bad_signers == (2,), exc.bad_signers
        else:
            raise AssertionError(f"{kind}: a wrong share combined")
    suite = load_suite(cluster, secrets[0])                   # variant ts: BLS + MAC + Ed25519
    assert suite.threshold_signer is not None and suite.macs is not None
    text = (out / "cluster.toml").read_text()
    pops = [line for line in text.splitlines() if line.startswith("bls_pop")]
    (out / "swapped.toml").write_text(text.replace(pops[1], "@").replace(pops[2], pops[1])
                                      .replace("@", pops[2]))
    try:
        load_cluster(out / "swapped.toml")
    except KeyFileError as exc:
        assert exc.field == "replica[1].bls_pop", exc.field
    else:
        raise AssertionError("swapped proofs of possession accepted")
    os.environ["POE_BLS_BACKEND"] = "blspy"
    try:
        select_backend()
    except CryptoError as exc:
        print(f"refused: {exc}")
    else:
        raise AssertionError("POE_BLS_BACKEND=blspy accepted without blspy")
    assert sys.modules["blspy"] is None and "poe.crypto.bls_blspy" not in sys.modules
    print("pyblst alone: ok")
''')


def test_everything_bls_works_on_pyblst_alone(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if k != "POE_BLS_BACKEND"}
    done = subprocess.run([sys.executable, "-P", "-c", SCRIPT, str(tmp_path / "keys")],
                          capture_output=True, text=True, timeout=240, check=False,
                          env=environ, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[-1] == "pyblst alone: ok"
    refused = next(line for line in lines if line.startswith("refused: "))
    assert refused == ("refused: POE_BLS_BACKEND=blspy but blspy is not installed; pip install "
                       "blspy (wheels for CPython 3.11 and 3.12 only), or unset the variable")
    assert (tmp_path / "keys" / "cluster.toml").is_file()


def test_the_simulation_would_catch_a_blspy_import(tmp_path: Path) -> None:
    """The check above is real: in such an interpreter, importing blspy fails."""
    probe = 'import sys; sys.modules["blspy"] = None\nimport blspy'
    done = subprocess.run([sys.executable, "-P", "-c", probe], capture_output=True, text=True,
                          timeout=60, check=False, cwd=tmp_path)
    assert done.returncode != 0 and "ModuleNotFoundError" in done.stderr

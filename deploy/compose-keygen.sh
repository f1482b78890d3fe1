#!/bin/sh
# compose-keygen.sh DIR REPLICAS CLIENTS [more `poe keygen` options]
#
# The keys of the compose cluster (deploy/compose.yaml): `poe keygen` writes one --host for
# every replica, so this generates them with --host replica0 and then sets replica i's host
# in cluster.toml to "replica<i>" (its compose service and host name). cluster.toml may be
# edited this way: the hosts and ports are not part of the keys or the genesis block.
#
# Idempotent: if DIR/cluster.toml exists the keys are kept (a second `docker compose up`
# must not replace the keys the replicas' stores were written with). The files are made in
# DIR/.keygen and moved into DIR only once complete. $POE: the poe command (default `poe`).
set -eu
[ "$#" -ge 3 ] || { echo "usage: $0 DIR REPLICAS CLIENTS [poe keygen options]" >&2; exit 2; }
out=$1 n=$2 clients=$3
shift 3
poe=${POE:-poe}

if [ -f "$out/cluster.toml" ]; then
    echo "compose-keygen: $out/cluster.toml exists: keeping these keys"
    exit 0
fi
new="$out/.keygen"
rm -rf "$new"
$poe keygen --replicas "$n" --clients "$clients" --out "$new" --host replica0 "$@"

i=0
while [ "$i" -lt "$n" ]; do
    # the line after `id = i` in replica i's table is its host (clients have no host line)
    sed -i "/^id = $i\$/{n;s/^host = \"[^\"]*\"\$/host = \"replica$i\"/;}" "$new/cluster.toml"
    i=$((i + 1))
done
hosts=$(grep -c '^host = "replica[0-9]*"$' "$new/cluster.toml")
distinct=$(grep '^host = ' "$new/cluster.toml" | sort -u | wc -l)
if [ "$hosts" -ne "$n" ] || [ "$distinct" -ne "$n" ]; then
    echo "compose-keygen: could not set the $n replica hosts in $new/cluster.toml" >&2
    exit 1
fi

for f in "$new"/*.secret.toml "$new/poe.toml"; do
    mv "$f" "$out/"
done
mv "$new/cluster.toml" "$out/"          # last: its presence means the set is complete
rmdir "$new"
echo "compose-keygen: replica hosts replica0..replica$((n - 1)) in $out/cluster.toml"

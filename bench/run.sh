#!/usr/bin/env bash
# Epistle vs Postfix on this machine, in one run: 20,000 messages of 10 KB,
# one recipient each, relayed to Postfix's smtp-sink on loopback.
#
#   bench/run.sh [N]        (default N=20000; needs root for Postfix)
#   ENGINE=postgres bench/run.sh    Epistle on the local PostgreSQL
#                                   (database epistle_bench, recreated)
#   DKIM=none|rsa|ed25519 bench/run.sh   Epistle's DKIM signing (default rsa:
#                                   every message signed with RSA-2048)
#   BIN=/tmp/epistle-old bench/run.sh   that binary instead of this checkout's
#
# 1. smtp-source -> smtp-sink            the limit of the box
# 2. Epistle: curl POSTs /v1/messages/batch (1000 per request, 2 in
#    parallel) -> Epistle (SQLite, synchronous=FULL, DKIM) -> smtp-sink
# 3. smtp-source (20 sessions) -> Epistle's SMTP listener (DKIM) -> smtp-sink
# 4. smtp-source (20 sessions) -> Epistle's SMTP listener -> MX transport
#    (MX looked up in dnsmasq on loopback, per-host pool) -> smtp-sink
# 5. smtp-source (20 sessions) -> Postfix (its durable queue) -> smtp-sink
# 6. the same, with Postfix signing through OpenDKIM (milter, RSA-2048,
#    relaxed/relaxed): the peer setup that matches Epistle's DKIM signing
#
# Accept rate: messages / time until the last 2xx (Epistle) or until
# smtp-source ends (Postfix). End-to-end rate: messages / time until
# smtp-sink has counted them all. Both from the first byte sent.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/relay-config.sh
N="${1:-20000}"
ENGINE="${ENGINE:-sqlite}"
DKIM="${DKIM:-rsa}"
SIZE=10240
OUT="bench/out"
TARGET="${CARGO_TARGET_DIR:-$HOME/.cache/epistle-target}"
# BIN=/path/to/epistle runs that build instead of building this checkout
# (to compare two builds in the same conditions).
BIN="${BIN:-}"

need() { command -v "$1" >/dev/null || { echo "missing $1: $2" >&2; exit 1; }; }
need smtp-sink "apt-get install postfix"
need smtp-source "apt-get install postfix"
need curl "apt-get install curl"
need python3 "apt-get install python3"
need dnsmasq "apt-get install dnsmasq-base"
need opendkim "apt-get install opendkim opendkim-tools"

if [ -z "$BIN" ]; then
  CARGO_TARGET_DIR="$TARGET" cargo build --release -p epistle --quiet
  BIN="$TARGET/release/epistle"
fi
rm -rf "$OUT"; mkdir -p "$OUT"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
sink_count() { tr '\r' '\n' < "$1" | grep -o 'mesg=[0-9]*' | tail -1 | cut -d= -f2; }
wait_sink() { # file count timeout_s
  local deadline=$(( $(date +%s) + $3 ))
  while [ "$(sink_count "$1" || echo 0)" != "$2" ]; do
    [ "$(date +%s)" -gt "$deadline" ] && { echo "sink got $(sink_count "$1") of $2" >&2; return 1; }
    sleep 0.05
  done
}
start_sink() { # port file
  smtp-sink -c -u postfix "127.0.0.1:$1" 1000 > "$2" 2>&1 &
  echo $!
}
rate() { python3 -c "print(f'{$1/($3-$2):.0f}')"; }
secs() { python3 -c "print(f'{$2-$1:.1f}')"; }

echo "== machine: $(nproc) cores, $(uname -r); N=$N messages of $SIZE bytes"

# 1. the box's limit
P=$(free_port); SINK=$(start_sink "$P" "$OUT/sink-direct.txt"); sleep 0.3
T0=$(now); smtp-source -s 20 -l "$SIZE" -m "$N" -f bench@shop.example -t sink@example.com "127.0.0.1:$P"
wait_sink "$OUT/sink-direct.txt" "$N" 300; T2=$(now); kill "$SINK"
DIRECT=$(rate "$N" "$T0" "$T2")
echo "smtp-source -> smtp-sink: $DIRECT msg/s"

# 2. Epistle
python3 bench/gen_batches.py "$OUT/batches" "$N" 1000 "$SIZE"
P=$(free_port); SINK=$(start_sink "$P" "$OUT/sink-epistle.txt"); sleep 0.3
HP=$(free_port)
SP=$(free_port)
fresh_db() { # sqlite folder name: prints the database URL (PostgreSQL: recreated)
  if [ "$ENGINE" = postgres ]; then
    psql -q -h 127.0.0.1 -U postgres -d test -c "DROP DATABASE IF EXISTS epistle_bench WITH (FORCE)" \
      -c "CREATE DATABASE epistle_bench" >&2
    echo "postgres://postgres@127.0.0.1:5432/epistle_bench"
  else
    echo "sqlite://$OUT/$1/epistle.db"
  fi
}
DB_URL=$(fresh_db data)
relay_config "$DB_URL" "$HP" "$SP" "$P" > "$OUT/epistle.toml"
"$BIN" --config "$OUT/epistle.toml" serve > "$OUT/epistle.out" 2> "$OUT/epistle.err" &
EP=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$HP/readyz" >/dev/null && break; sleep 0.1; done
add_domain() { # port: the sending domain, with its DKIM key
  [ "$DKIM" = none ] && return 0
  curl -sf -o "$OUT/domain-$1.json" -H 'Authorization: Bearer ep_benchbenchbenchbenchbenchbench00' \
    -H 'Content-Type: application/json' -d "{\"name\":\"shop.example\",\"dkim\":{\"algorithms\":[\"$DKIM\"]}}" \
    "http://127.0.0.1:$1/v1/domains"
}
add_domain "$HP"
T0=$(now)
ls "$OUT"/batches/*.json | xargs -P 2 -I{} curl -sf -o /dev/null -w '%{http_code}\n' \
  -H 'Authorization: Bearer ep_benchbenchbenchbenchbenchbench00' -H 'Content-Type: application/json' \
  --data-binary @{} "http://127.0.0.1:$HP/v1/messages/batch" > "$OUT/epistle-codes.txt"
T1=$(now)
wait_sink "$OUT/sink-epistle.txt" "$N" 600; T2=$(now)
ACCEPTED=$(grep -c '^202$' "$OUT/epistle-codes.txt" || true)
curl -s "http://127.0.0.1:$HP/metrics" | grep -E '^epistle_(deliveries_total|queue_depth)' > "$OUT/epistle-metrics.txt" || true
E_ACC=$(rate "$N" "$T0" "$T1"); E_E2E=$(rate "$N" "$T0" "$T2")
echo "epistle (HTTP batch): $ACCEPTED/$(( N / 1000 )) batches accepted; accept $E_ACC msg/s ($(secs "$T0" "$T1") s), end-to-end $E_E2E msg/s ($(secs "$T0" "$T2") s)"

# 3. Epistle's SMTP listener, same load as Postfix gets (sink counter goes on from N)
T0=$(now); smtp-source -s 20 -l "$SIZE" -m "$N" -f bench@shop.example -t sink@example.com "127.0.0.1:$SP"; T1=$(now)
wait_sink "$OUT/sink-epistle.txt" "$(( 2 * N ))" 600; T2=$(now)
curl -s "http://127.0.0.1:$HP/metrics" | grep -E '^epistle_(deliveries_total|queue_depth)' > "$OUT/epistle-smtp-metrics.txt" || true
kill -TERM "$EP"; wait "$EP" || true; kill "$SINK"
S_ACC=$(rate "$N" "$T0" "$T1"); S_E2E=$(rate "$N" "$T0" "$T2")
echo "epistle (SMTP): accept $S_ACC msg/s ($(secs "$T0" "$T1") s), end-to-end $S_E2E msg/s ($(secs "$T0" "$T2") s)"

# 4. Epistle delivering directly to MX hosts: dest.example's MX is served by
# dnsmasq and points at loopback, where smtp-sink listens on delivery.mx_port.
P=$(free_port); SINK=$(start_sink "$P" "$OUT/sink-mx.txt")
DP=$(free_port)
dnsmasq -k -p "$DP" --listen-address=127.0.0.1 --bind-interfaces --no-resolv --no-hosts \
  --mx-host=dest.example,mx.dest.example,10 --host-record=mx.dest.example,127.0.0.1 > "$OUT/dnsmasq.log" 2>&1 &
DNSMASQ=$!
sleep 0.3
HP2=$(free_port); SP2=$(free_port)
DB_URL=$(fresh_db data-mx)
cat > "$OUT/epistle-mx.toml" <<TOML
database_url = "$DB_URL"
http_addr = "127.0.0.1:$HP2"
bootstrap_api_key = "ep_benchbenchbenchbenchbenchbench00"
log = "warn"
smtp_addr = "127.0.0.1:$SP2"

[smtp]
trusted_networks = ["127.0.0.0/8"]

[dns]
nameservers = ["127.0.0.1:$DP"]

[delivery]
batch_size = 500
max_in_flight = 1000
mx_port = $P
mx_allow_private_addresses = true   # the "MX host" is smtp-sink on loopback

[[transports]]
name = "direct"
kind = "mx"
max_connections = 20
TOML
"$BIN" --config "$OUT/epistle-mx.toml" serve > "$OUT/epistle-mx.out" 2> "$OUT/epistle-mx.err" &
EP=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$HP2/readyz" >/dev/null && break; sleep 0.1; done
add_domain "$HP2"
T0=$(now); smtp-source -s 20 -l "$SIZE" -m "$N" -f bench@shop.example -t sink@dest.example "127.0.0.1:$SP2"; T1=$(now)
wait_sink "$OUT/sink-mx.txt" "$N" 600; T2=$(now)
kill -TERM "$EP"; wait "$EP" || true; kill "$SINK" "$DNSMASQ"
M_ACC=$(rate "$N" "$T0" "$T1"); M_E2E=$(rate "$N" "$T0" "$T2")
echo "epistle (SMTP -> MX): accept $M_ACC msg/s ($(secs "$T0" "$T1") s), end-to-end $M_E2E msg/s ($(secs "$T0" "$T2") s)"

# 5. Postfix
P=$(free_port); SINK=$(start_sink "$P" "$OUT/sink-postfix.txt"); sleep 0.3
postconf -e "inet_interfaces = loopback-only" "inet_protocols = ipv4" "mydestination =" \
  "relayhost = [127.0.0.1]:$P" "mynetworks = 127.0.0.0/8" "smtp_tls_security_level = none" \
  "smtpd_tls_security_level = none" "message_size_limit = 0" "default_destination_concurrency_limit = 20" \
  "default_transport = smtp" "relay_transport = relay" "smtpd_milters =" "non_smtpd_milters ="
postfix stop >/dev/null 2>&1 || true
postsuper -d ALL >/dev/null 2>&1 || true
postfix start >/dev/null 2>&1
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/25) 2>/dev/null && break; sleep 0.1; done
T0=$(now); smtp-source -s 20 -l "$SIZE" -m "$N" -f bench@shop.example -t sink@example.com 127.0.0.1:25; T1=$(now)
wait_sink "$OUT/sink-postfix.txt" "$N" 900; T2=$(now)
postfix stop >/dev/null 2>&1 || true; kill "$SINK"
P_ACC=$(rate "$N" "$T0" "$T1"); P_E2E=$(rate "$N" "$T0" "$T2")
echo "postfix: accept $P_ACC msg/s ($(secs "$T0" "$T1") s), end-to-end $P_E2E msg/s ($(secs "$T0" "$T2") s)"

# 6. Postfix + OpenDKIM
P=$(free_port); SINK=$(start_sink "$P" "$OUT/sink-postfix-dkim.txt"); sleep 0.3
MP=$(free_port)
mkdir -p "$OUT/opendkim"
opendkim-genkey -b 2048 -d shop.example -s bench -D "$OUT/opendkim"
cat > "$OUT/opendkim/opendkim.conf" <<CONF
Syslog no
Mode s
Domain shop.example
Selector bench
KeyFile $PWD/$OUT/opendkim/bench.private
Socket inet:$MP@127.0.0.1
Canonicalization relaxed/relaxed
SignatureAlgorithm rsa-sha256
RequireSafeKeys no
CONF
opendkim -f -x "$OUT/opendkim/opendkim.conf" > "$OUT/opendkim.log" 2>&1 &
ODK=$!
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$MP) 2>/dev/null && break; sleep 0.1; done
postconf -e "relayhost = [127.0.0.1]:$P" "smtpd_milters = inet:127.0.0.1:$MP" "non_smtpd_milters = inet:127.0.0.1:$MP" \
  "milter_default_action = tempfail"
postsuper -d ALL >/dev/null 2>&1 || true
postfix start >/dev/null 2>&1
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/25) 2>/dev/null && break; sleep 0.1; done
T0=$(now); smtp-source -s 20 -l "$SIZE" -m "$N" -f bench@shop.example -t sink@example.com 127.0.0.1:25; T1=$(now)
wait_sink "$OUT/sink-postfix-dkim.txt" "$N" 900; T2=$(now)
postfix stop >/dev/null 2>&1 || true; kill "$SINK" "$ODK"
postconf -e "smtpd_milters =" "non_smtpd_milters ="
PD_ACC=$(rate "$N" "$T0" "$T1"); PD_E2E=$(rate "$N" "$T0" "$T2")
echo "postfix + opendkim: accept $PD_ACC msg/s ($(secs "$T0" "$T1") s), end-to-end $PD_E2E msg/s ($(secs "$T0" "$T2") s)"

echo
echo "| path | accept msg/s | end-to-end msg/s |"
echo "| --- | --- | --- |"
echo "| smtp-source -> smtp-sink (box limit) | - | $DIRECT |"
echo "| curl batch API -> Epistle ($ENGINE, DKIM $DKIM) -> smtp-sink | $E_ACC | $E_E2E |"
echo "| smtp-source -> Epistle SMTP listener ($ENGINE, DKIM $DKIM) -> smtp-sink | $S_ACC | $S_E2E |"
echo "| smtp-source -> Epistle SMTP listener ($ENGINE, DKIM $DKIM) -> MX transport -> smtp-sink | $M_ACC | $M_E2E |"
echo "| smtp-source -> Postfix $(postconf -h mail_version) -> smtp-sink | $P_ACC | $P_E2E |"
echo "| smtp-source -> Postfix $(postconf -h mail_version) + OpenDKIM (rsa) -> smtp-sink | $PD_ACC | $PD_E2E |"
python3 -c "print(f'end-to-end vs Postfix: HTTP batch {$E_E2E/$P_E2E:.2f}x, SMTP {$S_E2E/$P_E2E:.2f}x, SMTP->MX {$M_E2E/$P_E2E:.2f}x')"
python3 -c "print(f'end-to-end vs Postfix + OpenDKIM: HTTP batch {$E_E2E/$PD_E2E:.2f}x, SMTP {$S_E2E/$PD_E2E:.2f}x, SMTP->MX {$M_E2E/$PD_E2E:.2f}x')"

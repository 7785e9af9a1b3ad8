# Sourced by run.sh and smtp-path.sh: the configuration of an Epistle that
# takes mail over HTTP and SMTP (trusted loopback) and relays it to smtp-sink.
#   relay_config DB_URL HTTP_PORT SMTP_PORT SINK_PORT [BATCH]   (prints TOML)
relay_config() {
  cat <<TOML
database_url = "$1"
http_addr = "127.0.0.1:$2"
bootstrap_api_key = "ep_benchbenchbenchbenchbenchbench00"
log = "warn"
smtp_addr = "127.0.0.1:$3"

[smtp]
trusted_networks = ["127.0.0.0/8"]

[delivery]
batch_size = ${5:-500}
max_in_flight = 1000

[[transports]]
name = "smtp-sink"
kind = "smtp"
host = "127.0.0.1"
port = $4
tls = "none"
max_connections = 20
${EXTRA_TOML:-}
TOML
}

#!/usr/bin/env bash
# Makes sure the services and tools the test suite uses are there: PostgreSQL at
# 127.0.0.1:5432 (trust auth, user postgres, database test), NATS with
# JetStream at 127.0.0.1:4222 and RabbitMQ at 127.0.0.1:5672 (guest/guest).
# On this project's machines they run already; this starts one that has
# stopped, and says how to provide it otherwise.
set -euo pipefail

pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }

if ! pg_up; then
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "PostgreSQL is not answering on 127.0.0.1:5432; starting it" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
fi
if ! pg_up; then
  echo "PostgreSQL is needed at 127.0.0.1:5432 (user postgres, trust auth), or set EPISTLE_TEST_POSTGRES_URL" >&2
  exit 1
fi

port_up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { for _ in $(seq 1 30); do port_up "$1" && return 0; sleep 1; done; return 1; }

if ! port_up 4222 && [ -x /usr/sbin/nats-server ]; then
  echo "NATS is not answering on 127.0.0.1:4222; starting it with JetStream" >&2
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log || true
  wait_port 4222 || true
fi
if ! port_up 4222; then
  echo "NATS with JetStream is needed at 127.0.0.1:4222 (nats-server -js); the event consumer tests use it" >&2
  exit 1
fi
if ! port_up 5672 && command -v rabbitmq-server >/dev/null 2>&1; then
  echo "RabbitMQ is not answering on 127.0.0.1:5672; starting it" >&2
  rabbitmq-server -detached || true
  wait_port 5672 || true
fi
if ! port_up 5672; then
  echo "RabbitMQ is needed at 127.0.0.1:5672 (guest/guest); the event consumer tests use it" >&2
  exit 1
fi

# Independent peers the tests run, from PyPI: dkimpy (with PyNaCl for
# Ed25519) verifies Epistle's DKIM signatures; moto_server stands in for
# Amazon SES and checks SigV4 signatures; icalendar reads the calendar
# invitations.
if ! python3 -c 'import dkim, nacl' >/dev/null 2>&1; then
  echo "installing dkimpy and pynacl (DKIM verifier used by the tests)" >&2
  python3 -m pip install --quiet --disable-pip-version-check dkimpy pynacl
fi
if ! python3 -c 'import icalendar' >/dev/null 2>&1; then
  echo "installing icalendar (iCalendar parser used by the tests)" >&2
  python3 -m pip install --quiet --disable-pip-version-check icalendar
fi
if ! command -v moto_server >/dev/null 2>&1; then
  echo "installing moto[server] (the SES stand-in used by the tests)" >&2
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]'
fi

# Headless Chromium renders the built-in templates at phone and desktop
# widths in the render tests (Debian's package).
if ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium (the template preview test loads mail in it)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null
fi

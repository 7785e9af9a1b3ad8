#!/usr/bin/env bash
# Makes sure the services and tools the test suite uses are there: PostgreSQL at
# 127.0.0.1:5432 (trust auth, user postgres, database test). On this
# project's machines it runs already; this starts it if it has stopped, and
# says how to provide it otherwise.
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

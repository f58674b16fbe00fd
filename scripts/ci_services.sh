#!/usr/bin/env bash
# Services the test suite uses when they are present: Debian's Chromium + ChromeDriver (the reader
# study's browser test) and a PostgreSQL server on loopback (the reader study's PostgreSQL tests).
# Prints `export MEDSR_TEST_POSTGRES_URL=...` on success. As root on Debian it also prints
# `export MEDSR_REQUIRE_SERVICES=1`: there a service that fails to come up fails its tests instead of
# skipping them; elsewhere they skip with the reason. Safe to run twice.
set -uo pipefail

log() { echo "ci_services: $*" >&2; }

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    log "not root on Debian: PostgreSQL and Chromium tests will skip"
    exit 0
fi
echo "export MEDSR_REQUIRE_SERVICES=1"  # here they can be installed: their tests must run, not skip

need=()
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v pg_lsclusters >/dev/null || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}") >/dev/null 2>&1 \
        || log "apt-get install ${need[*]} failed"
fi

command -v pg_lsclusters >/dev/null || exit 0
cluster=$(pg_lsclusters --no-header 2>/dev/null | head -n1)
if [ -z "$cluster" ]; then
    version=$(ls /usr/lib/postgresql | sort -n | tail -n1)
    pg_createcluster "$version" main >/dev/null 2>&1 || { log "pg_createcluster failed"; exit 0; }
    cluster=$(pg_lsclusters --no-header | head -n1)
fi
read -r version name port _ <<<"$cluster"
pg_ctlcluster "$version" "$name" start >/dev/null 2>&1 || true
for _ in $(seq 1 30); do
    su postgres -c "psql -p $port -qtAc 'select 1'" >/dev/null 2>&1 && break
    sleep 1
done
su postgres -c "psql -p $port -qtAc \"select 1 from pg_roles where rolname='medsr'\"" | grep -q 1 \
    || su postgres -c "psql -p $port -qc \"create role medsr login password 'medsr'\"" >/dev/null
su postgres -c "psql -p $port -qtAc \"select 1 from pg_database where datname='medsr_test'\"" | grep -q 1 \
    || su postgres -c "createdb -p $port -O medsr medsr_test" >/dev/null
if su postgres -c "psql -p $port -qtAc 'select 1'" >/dev/null 2>&1; then
    echo "export MEDSR_TEST_POSTGRES_URL=postgresql://medsr:medsr@127.0.0.1:$port/medsr_test"
else
    log "PostgreSQL did not start: its tests will skip"
fi

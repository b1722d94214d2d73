#!/usr/bin/env bash
# Installs every Debian package the project needs, and only what is missing.
# Idempotent: a second run checks dpkg and returns in well under a second.
set -euo pipefail

PACKAGES=(
    build-essential cmake pkg-config clang clang-format-14 clang-tidy
    libh2o-evloop-dev libpq-dev libhiredis-dev libjson-c-dev libjwt-dev librdkafka-dev
    libssl-dev libcmocka-dev pgbouncer python3-jsonschema openssl
    postgresql-15 postgresql-client-15 postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl
    redis-server redis-tools kcat
    python3 python3-pytest python3-psycopg2 python3-redis python3-requests
    python3-confluent-kafka python3-jwt python3-cryptography
    wrk yamllint shellcheck curl procps iproute2 util-linux docker-compose nodejs prometheus
)

# The OpenAPI linter runs on Node.js; keep a Node the machine already has.
if ! command -v npm >/dev/null 2>&1; then
    PACKAGES+=(nodejs npm)
fi

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# Package installs may try to start default services; keep them from doing so.
policy_created=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    policy_created=1
fi
trap '[ $policy_created -eq 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d' EXIT
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

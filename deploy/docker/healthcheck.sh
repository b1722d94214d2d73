#!/bin/bash
# Container health probe without curl: `profile-healthcheck PORT [PATH]` sends one HTTP/1.0
# GET to 127.0.0.1:PORT and exits 0 only on a 200 status line. Uses bash's /dev/tcp, so the
# runtime image needs nothing beyond bash (in debian:bookworm-slim). A connect to a closed
# loopback port fails at once; the read waits at most 3 s; Docker's --timeout bounds the rest.
set -u
port=${1:?usage: profile-healthcheck PORT [PATH]}
path=${2:-/health/live}
case $port in
'' | *[!0-9]*)
    echo "profile-healthcheck: bad port '$port'" >&2
    exit 2
    ;;
esac
if ! exec 3<>"/dev/tcp/127.0.0.1/$port"; then
    echo "profile-healthcheck: cannot connect to 127.0.0.1:$port" >&2
    exit 1
fi
printf 'GET %s HTTP/1.0\r\nHost: localhost\r\nUser-Agent: profile-healthcheck\r\n\r\n' "$path" >&3
status=
IFS= read -r -t 3 status <&3 || true
exec 3<&-
status=${status%$'\r'}
case $status in
"HTTP/1."?" 200" | "HTTP/1."?" 200 "*) exit 0 ;;
esac
echo "profile-healthcheck: GET $path answered '${status:-nothing}'" >&2
exit 1

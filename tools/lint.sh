#!/usr/bin/env bash
# `make lint`: static checks that need no running service. Fails on the first broken check
# group but runs every group so one run shows everything.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
status=0
run() {
    local name=$1
    shift
    if "$@"; then
        echo "lint: $name ok"
    else
        echo "lint: $name FAILED" >&2
        status=1
    fi
}

shell_syntax() {
    local f ok=0
    for f in tools/*.sh .ci/run; do
        [ -f "$f" ] || continue
        bash -n "$f" || ok=1
    done
    if command -v shellcheck >/dev/null 2>&1; then
        shellcheck -S warning tools/*.sh .ci/run || ok=1
    fi
    return $ok
}
run "shell scripts" shell_syntax
[ -x tools/lint-deploy.sh ] && run "deploy manifests" tools/lint-deploy.sh
[ -x tools/check-config-doc.sh ] && run "config reference" tools/check-config-doc.sh
[ -x tools/lint-openapi.sh ] && run "openapi" tools/lint-openapi.sh
[ -x tools/lint-asyncapi.sh ] && run "asyncapi" tools/lint-asyncapi.sh
run "no outside references" tools/lint-refs.sh

# api/codec/ and api/http/headers.c are leaves (docs/architecture.md): they include nothing else
# of api/ but codec headers and their own header, so any room may call them.
api_leaves() {
    local f inc ok=0
    for f in api/codec/*.[ch] api/http/headers.[ch]; do
        for inc in $(sed -n 's|^#include "\(api/[^"]*\)".*|\1|p' "$f"); do
            case $inc in
            api/codec/* | "${f%.[ch]}.h") ;;
            *)
                echo "lint: $f includes $inc (a leaf includes nothing else of api/)" >&2
                ok=1
                ;;
            esac
        done
    done
    return $ok
}
run "api leaf files" api_leaves
exit $status

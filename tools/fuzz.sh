#!/usr/bin/env bash
# Builds the libFuzzer harnesses in tests/fuzz (clang, ASan+UBSan) and runs each for a bounded
# time. Usage: tools/fuzz.sh [SECONDS] [NAME...]   (default 30 s each, all harnesses)
# Environment: FUZZ_BUILD_DIR (default build/fuzz), FUZZ_JOBS (parallel workers per harness, 1).
# Seeds come from tests/fuzz/corpus/<name>/ and crashers kept as regressions from
# tests/fuzz/regressions/<name>/; new corpus entries go to the build dir, never into the repo.
# Exit status is non-zero when any harness fails to build or finds a crash.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_EACH=${1:-30}
shift || true
OUT=${FUZZ_BUILD_DIR:-$ROOT/build/fuzz}
CC=${CC_FUZZ:-clang}

if ! [[ $SECONDS_EACH =~ ^[0-9]+$ ]]; then
    echo "usage: $0 [SECONDS] [NAME...]" >&2
    exit 2
fi
if [ $# -gt 0 ]; then
    NAMES=("$@")
else
    NAMES=()
    for f in "$ROOT"/tests/fuzz/fuzz_*.c; do
        n=$(basename "$f" .c)
        NAMES+=("${n#fuzz_}")
    done
fi

mkdir -p "$OUT/obj"
read -r -a PKG_CFLAGS <<<"$(pkg-config --cflags json-c openssl)"
read -r -a PKG_LIBS <<<"$(pkg-config --libs json-c openssl)"
SANITIZERS="fuzzer-no-link,address,undefined"
CFLAGS=(-std=gnu11 -g -O1 -D_GNU_SOURCE -DH2O_USE_LIBUV=0 -I"$ROOT" "${PKG_CFLAGS[@]}"
    "-fsanitize=$SANITIZERS" -fno-sanitize-recover=all -fno-omit-frame-pointer
    -Wall -Wextra -Werror -Wno-unused-parameter)
LIBS=("${PKG_LIBS[@]}" -lm -lpthread)
SOURCES=(api/codec/b64url.c api/codec/ids.c api/http/problem.c api/data/cursor.c
    api/resources/validate.c api/codec/field_errors.c api/codec/jsonscan.c
    api/resources/listquery.c api/http/auth.c api/http/trace.c api/http/reqhash.c api/http/cors.c common/alloc.c common/buf.c common/log.c common/clock.c)

OBJS=()
for s in "${SOURCES[@]}"; do
    o="$OUT/obj/$(echo "$s" | tr / _).o"
    "$CC" "${CFLAGS[@]}" -c "$ROOT/$s" -o "$o"
    OBJS+=("$o")
done

status=0
for n in "${NAMES[@]}"; do
    src="$ROOT/tests/fuzz/fuzz_$n.c"
    bin="$OUT/fuzz_$n"
    if ! "$CC" "${CFLAGS[@]}" -fsanitize=fuzzer "$src" "${OBJS[@]}" "${LIBS[@]}" -o "$bin"; then
        echo "fuzz: $n: build failed" >&2
        status=1
        continue
    fi
    work="$OUT/corpus-$n"
    art="$OUT/artifacts-$n"
    mkdir -p "$work" "$art"
    dirs=("$work")
    [ -d "$ROOT/tests/fuzz/corpus/$n" ] && dirs+=("$ROOT/tests/fuzz/corpus/$n")
    [ -d "$ROOT/tests/fuzz/regressions/$n" ] && dirs+=("$ROOT/tests/fuzz/regressions/$n")
    echo "fuzz: $n for ${SECONDS_EACH}s"
    if ! "$bin" -max_total_time="$SECONDS_EACH" -max_len=70000 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$art/" "${dirs[@]}" >"$OUT/$n.log" 2>&1; then
        echo "fuzz: $n FAILED; see $OUT/$n.log and $art/" >&2
        tail -n 40 "$OUT/$n.log" >&2
        status=1
    else
        grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$OUT/$n.log" |
            sed "s/^/fuzz: $n: /"
    fi
done
exit $status

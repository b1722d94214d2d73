#!/bin/bash
# Prints, one per line, the Debian packages that own the shared libraries the given ELF
# binaries load (ldd + dpkg -S), so the runtime image installs exactly those and no -dev
# package. Run in the build stage; the runtime stage is the same Debian release, so the
# package names match. Exits non-zero when a library belongs to no package.
set -euo pipefail
[ $# -gt 0 ] || {
    echo "usage: runtime-deps.sh BINARY..." >&2
    exit 2
}
owner() {
    local lib=$1 cand out
    for cand in "$lib" "$(readlink -f "$lib")" "/usr${lib#/usr}" "${lib#/usr}"; do
        if out=$(dpkg-query -S "$cand" 2>/dev/null); then
            printf '%s\n' "${out%%:*}"
            return 0
        fi
    done
    echo "runtime-deps: no package owns $lib" >&2
    return 1
}
status=0
pkgs=()
for bin in "$@"; do
    libs=$(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
    for lib in $libs; do
        if pkg=$(owner "$lib"); then
            pkgs+=("$pkg")
        else
            status=1
        fi
    done
done
printf '%s\n' "${pkgs[@]}" | sort -u
exit "$status"

#!/usr/bin/env bash
# The repository stands alone: no tracked file may point at a document outside it (a team design
# page or a sibling folder of the checkout) or at an absolute path of one machine (a home or
# work directory, or a /tmp name with a random suffix that mktemp or tempfile produced).
# Template names (/tmp/x.XXXXXX) and fixed system paths (/usr, /var, /etc, /tmp/packages.txt)
# are fine. Prints each offending line; exits 1 if there is one.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

# one Perl regex per rule; the rule's name is printed with each hit
rules=(
    # written with character classes so that this file does not name them itself
    'outside document|DESIGN[.]md|[.][.]/shared/'
    'machine path|(^|[^A-Za-z0-9._~-])/(work|home|root|Users)/[A-Za-z0-9._-]'
    'temporary path|/tmp/(tmp[a-z0-9_]{6,}|pytest-of-|bash_jobs|[\w.-]*?[._-](?=[A-Za-z0-9]*[0-9])(?=[A-Za-z0-9]*[A-Za-z])[A-Za-z0-9]{6,}(?![A-Za-z0-9]))'
)

status=0
for rule in "${rules[@]}"; do
    name=${rule%%|*}
    re=${rule#*|}
    if hits=$(git grep -n -I -P -e "$re" -- .); then
        while IFS= read -r line; do
            echo "lint-refs: $name: $line" >&2
        done <<<"$hits"
        status=1
    fi
done
exit $status

#!/usr/bin/env bash
# Offline checks of the container and Kubernetes files (no Docker engine, no cluster):
#   1. yamllint (.yamllint) on docker-compose.yml and deploy/**/*.yaml
#   2. docker-compose.yml through `docker compose config -q` (or docker-compose v1)
#   3. Kubernetes schema check of deploy/k8s/*.yaml with the JSON schemas bundled in the npm
#      package kubernetes-models (tools/deploy-lint/package.json, locked), unknown fields included
#   4. cross-references (tools/deploy-lint/check_deploy.py): selectors, ports, probes,
#      ConfigMap/Secret keys, config variable names, connection budget, compose wiring
#   5. Prometheus alert rules: `promtool check rules` and `promtool test rules`
#   6. Dockerfile syntax (dockerfile-utils; hadolint too when installed), shellcheck of the
#      container scripts, and `kubectl kustomize` when kubectl is installed
# Prints each check it ran; exits non-zero when any failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

status=0
pass() { echo "lint-deploy: ok      $*"; }
fail() {
    echo "lint-deploy: FAILED  $*" >&2
    status=1
}
skip() { echo "lint-deploy: skipped $*"; }

mapfile -t k8s_files < <(find deploy/k8s -name '*.yaml' ! -name kustomization.yaml | sort)
mapfile -t yaml_files < <(find deploy -name '*.yaml' -o -name '*.yml' | sort)

# 1. yamllint
if ! command -v yamllint >/dev/null 2>&1; then
    fail "yamllint not installed (tools/install-deps.sh)"
elif yamllint -s -c .yamllint docker-compose.yml .yamllint "${yaml_files[@]}"; then
    pass "yamllint: docker-compose.yml .yamllint ${yaml_files[*]}"
else
    fail "yamllint"
fi

# 2. compose file: the real parser when a client is there (it needs no engine for `config`).
if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose)
else
    compose=()
fi
if [ ${#compose[@]} -gt 0 ]; then
    if "${compose[@]}" -f docker-compose.yml config -q; then
        pass "${compose[*]} config -q: docker-compose.yml"
    else
        fail "${compose[*]} config -q: docker-compose.yml"
    fi
else
    fail "no docker compose client (install Debian's docker-compose: tools/install-deps.sh)"
fi

# 3. schema check (node + locked npm packages, installed on first use)
lintdir=tools/deploy-lint
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    fail "node/npm not installed: cannot run the Kubernetes schema check"
else
    if [ ! -f "$lintdir/node_modules/.package-lock.json" ] ||
        [ "$lintdir/package-lock.json" -nt "$lintdir/node_modules/.package-lock.json" ]; then
        echo "lint-deploy: installing $lintdir npm packages (npm ci, from package-lock.json)"
        if ! (cd "$lintdir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
            fail "npm ci in $lintdir"
        fi
    fi
    if node "$lintdir/validate-schemas.mjs" "${k8s_files[@]}"; then
        pass "Kubernetes schema check (kubernetes-models): ${#k8s_files[@]} files"
    else
        fail "Kubernetes schema check"
    fi
fi

# 4. cross-references
if /usr/bin/python3 "$lintdir/check_deploy.py" --repo .; then
    pass "cross-reference check (check_deploy.py): deploy/k8s + docker-compose.yml"
else
    fail "cross-reference check (check_deploy.py)"
fi

# 5. alert rules
if ! command -v promtool >/dev/null 2>&1; then
    fail "promtool not installed (Debian package prometheus, tools/install-deps.sh)"
elif promtool check rules deploy/prometheus/profile-alerts.yaml >/dev/null &&
    (cd deploy/prometheus && promtool test rules profile-alerts.test.yaml >/dev/null); then
    pass "promtool check rules + test rules: deploy/prometheus/profile-alerts.yaml"
else
    promtool check rules deploy/prometheus/profile-alerts.yaml >&2
    (cd deploy/prometheus && promtool test rules profile-alerts.test.yaml >&2)
    fail "promtool rules"
fi

# 6. Dockerfile and container scripts
dockerfiles=(deploy/docker/Dockerfile)
if [ -x "$lintdir/node_modules/.bin/dockerfile-utils" ]; then
    ok=1
    for f in "${dockerfiles[@]}"; do
        out=$("$lintdir/node_modules/.bin/dockerfile-utils" lint "$f" 2>&1) || ok=0
        # It prints problems (errors and warnings) and exits 0 on warnings: treat both as failures.
        if [ -n "$out" ]; then
            echo "$out" >&2
            ok=0
        fi
    done
    if [ $ok -eq 1 ]; then pass "dockerfile-utils lint: ${dockerfiles[*]}"; else fail "dockerfile-utils lint"; fi
else
    fail "dockerfile-utils missing from $lintdir/node_modules"
fi
if command -v hadolint >/dev/null 2>&1; then
    if hadolint "${dockerfiles[@]}"; then pass "hadolint: ${dockerfiles[*]}"; else fail "hadolint"; fi
else
    skip "hadolint (no Debian bookworm package; the npm \"hadolint\" is only a wrapper around a binary it cannot fetch here)"
fi
copy_ok=1
for f in "${dockerfiles[@]}"; do
    # Every file the Dockerfile copies must exist and be let through .dockerignore's allowlist.
    # (A folder that another helper has not created yet is reported too: the image needs it.)
    while read -r src; do
        if [ ! -e "$src" ]; then
            echo "  $f copies $src, which does not exist" >&2
            copy_ok=0
        elif ! grep -qxF "!${src%/}/" .dockerignore && ! grep -qxF "!${src%/}" .dockerignore; then
            echo "  $f copies $src, which .dockerignore excludes" >&2
            copy_ok=0
        fi
    done < <(awk '/^COPY / && !/--from=/ { for (i = 2; i < NF; i++) if ($i !~ /^--/) print $i }' "$f")
done
if [ $copy_ok -eq 1 ]; then
    pass "Dockerfile COPY sources exist and pass .dockerignore"
else
    fail "Dockerfile COPY sources"
fi
if command -v shellcheck >/dev/null 2>&1; then
    if shellcheck deploy/docker/*.sh tools/lint-deploy.sh tools/check-config-doc.sh; then
        pass "shellcheck: deploy/docker/*.sh tools/lint-deploy.sh tools/check-config-doc.sh"
    else
        fail "shellcheck"
    fi
else
    skip "shellcheck (not installed)"
fi
if command -v kubectl >/dev/null 2>&1; then
    if kubectl kustomize deploy/k8s >/dev/null; then
        pass "kubectl kustomize deploy/k8s"
    else
        fail "kubectl kustomize deploy/k8s"
    fi
else
    skip "kubectl kustomize (kubectl not installed; check_deploy.py checked the resource list)"
fi

if [ $status -eq 0 ]; then
    echo "lint-deploy: all checks passed"
else
    echo "lint-deploy: some checks FAILED" >&2
fi
exit $status

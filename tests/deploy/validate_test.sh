#!/usr/bin/env bash
# validate_test.sh — validates the kustomize renders (tests/deploy/kustomize_test.sh, OUT_DIR) and
# deploy/kong/kic.yaml offline against the Kubernetes OpenAPI schema (validate.mjs,
# npm kubernetes-models), after proving that the validator rejects broken objects; then checks the
# lifecycle invariant and the lint rules on each render together with deploy/kong/ (invariants.mjs),
# after proving that those checks catch broken values too.
#
# Usage: tests/deploy/validate_test.sh REPO_ROOT OUT_DIR
set -euo pipefail
root=${1:?usage: validate_test.sh REPO_ROOT OUT_DIR}
out=${2:?usage: validate_test.sh REPO_ROOT OUT_DIR}
here=$root/tests/deploy

fail() {
  echo "validate_test: FAIL: $*" >&2
  exit 1
}
command -v node >/dev/null || fail "node not found (Debian: apt-get install nodejs npm)"
command -v npm >/dev/null || fail "npm not found (Debian: apt-get install npm)"

# npm ci only when package-lock.json changed since the last install (a stamp in node_modules).
lock_sum=$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)
stamp=$here/node_modules/.rollsafe-lock-sha256
if [[ ! -f $stamp || $(cat "$stamp") != "$lock_sum" ]]; then
  echo "validate_test: npm ci in tests/deploy"
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) || fail "npm ci failed (is the npm registry reachable?)"
  echo "$lock_sum" >"$stamp"
else
  echo "validate_test: node_modules up to date (package-lock.json unchanged)"
fi

shopt -s nullglob
renders=("$out"/*.yaml)
((${#renders[@]} >= 2)) || fail "no renders in $out: run the deploy.kustomize test first"

cd "$here"
node validate.mjs --self-test || fail "the validator does not reject broken objects"
node validate.mjs "${renders[@]}" "$root/deploy/kong/kic.yaml" || fail "schema validation"

kong=("$root/deploy/kong/kong.yaml" "$root/deploy/kong/kic.yaml")
node invariants.mjs --self-test "$out/base.yaml" "${kong[@]}" || fail "the invariant checks do not catch broken values"
for r in "${renders[@]}"; do
  node invariants.mjs "$r" "${kong[@]}" || fail "invariants of $(basename "$r")"
done
echo "validate_test: PASS"

#!/usr/bin/env bash
# kustomize_test.sh — renders deploy/k8s (the base, through its top-level kustomization), deploy/k8s/base and every deploy/k8s/overlays/* with
# `kubectl kustomize`; fails on a render error or on anything kustomize prints on stderr
# (deprecation warnings included). The renders land in OUT/<name>.yaml for the schema test.
#
# Usage: tests/deploy/kustomize_test.sh REPO_ROOT OUT_DIR
set -euo pipefail
root=${1:?usage: kustomize_test.sh REPO_ROOT OUT_DIR}
out=${2:?usage: kustomize_test.sh REPO_ROOT OUT_DIR}

fail() {
  echo "kustomize_test: FAIL: $*" >&2
  exit 1
}

command -v kubectl >/dev/null ||
  fail "kubectl not found: run scripts/install-deps.sh (or install kubectl >= 1.22, whose kustomize reads these kustomizations)"
echo "kustomize_test: $(kubectl version --client 2>/dev/null | tr '\n' ' ')"

mkdir -p "$out"
rm -f "$out"/*.yaml
dirs=("$root/deploy/k8s" "$root/deploy/k8s/base")
for d in "$root"/deploy/k8s/overlays/*/; do
  [[ -f $d/kustomization.yaml ]] && dirs+=("${d%/}")
done
((${#dirs[@]} >= 2)) || fail "expected the base and at least one overlay under deploy/k8s/"

for d in "${dirs[@]}"; do
  name=$(basename "$d")
  rel=${d#"$root"/}
  if ! kubectl kustomize "$d" >"$out/$name.yaml" 2>"$out/$name.stderr"; then
    cat "$out/$name.stderr" >&2
    fail "kubectl kustomize $rel failed (kubectl older than 1.22? its kustomize lacks patches/path-less targets)"
  fi
  if [[ -s $out/$name.stderr ]]; then
    cat "$out/$name.stderr" >&2
    fail "kubectl kustomize $rel printed warnings (deprecated fields?)"
  fi
  kinds=$(grep -E '^kind: ' "$out/$name.yaml" | sort | uniq -c | awk '{printf "%s%s×%s", sep, $3, $1; sep=", "}')
  for k in Deployment Service PodDisruptionBudget; do
    grep -qx "kind: $k" "$out/$name.yaml" || fail "$rel renders no $k"
  done
  echo "kustomize_test: ok $rel -> $out/$name.yaml ($kinds)"
done
echo "kustomize_test: PASS (${#dirs[@]} kustomizations)"

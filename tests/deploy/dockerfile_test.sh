#!/usr/bin/env bash
# dockerfile_test.sh — static checks of deploy/docker/Dockerfile (no Docker engine needed):
#   1. every COPY/ADD source of the build context exists in the repository and is not excluded by
#      .dockerignore;
#   2. every top-level path the CMake files read through ${PROJECT_SOURCE_DIR}/ is copied
#      (except tests/ and bench/, which the image builds without);
#   3. the build stage builds the CMake target the ENTRYPOINT runs, and COPY --from=build takes
#      that target's file to the ENTRYPOINT path;
#   4. the build stage's packages are the build subset of scripts/install-deps.sh (no drift);
#   5. with BINARY given: every shared library it needs (ldd) belongs to a Debian package
#      (dpkg -S) that the runtime stage installs or that debian:12-slim already has.
#
# Usage: tests/deploy/dockerfile_test.sh REPO_ROOT [BINARY]
#        tests/deploy/dockerfile_test.sh --self-test REPO_ROOT BINARY   (each broken copy must fail)
set -euo pipefail

if [[ ${1:-} == --self-test ]]; then
  root=${2:?usage: dockerfile_test.sh --self-test REPO_ROOT BINARY}
  binary=${3:?usage: dockerfile_test.sh --self-test REPO_ROOT BINARY}
  self=$(readlink -f "$0")
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  bad=0
  # what / sed expression applied to the Dockerfile / what the check must print
  whats=() exprs=() expects=()
  add() { whats+=("$1") exprs+=("$2") expects+=("$3"); }
  add 'ENTRYPOINT naming another binary' 's|ENTRYPOINT \["/usr/local/bin/rollsafe"\]|ENTRYPOINT ["/usr/local/bin/rollsafed"]|' 'ENTRYPOINT runs rollsafed'
  add 'a COPY source that does not exist' 's|^COPY src/ src/|COPY srcs/ src/|' 'COPY source srcs/ does not exist'
  add 'include/ not copied' '/^COPY include\/ include\//d' 'read ${PROJECT_SOURCE_DIR}/include, which the Dockerfile does not COPY'
  add 'a runtime library missing' 's/ libsqlite3-0 / /' 'needs libsqlite3.so.0 from libsqlite3-0'
  add 'a build package missing' 's/ libssl-dev / /' 'installs libssl-dev but the build stage does not'
  for i in "${!whats[@]}"; do
    what=${whats[$i]} expr=${exprs[$i]} expect=${expects[$i]}
    r=$tmp/root
    rm -rf "$r"
    mkdir -p "$r/deploy/docker"
    for e in "$root"/* "$root"/.dockerignore; do [[ $(basename "$e") == deploy ]] || ln -s "$e" "$r/"; done
    for e in "$root"/deploy/*; do [[ $(basename "$e") == docker ]] || ln -s "$e" "$r/deploy/"; done
    sed -e "$expr" "$root/deploy/docker/Dockerfile" >"$r/deploy/docker/Dockerfile"
    if cmp -s "$r/deploy/docker/Dockerfile" "$root/deploy/docker/Dockerfile"; then
      echo "dockerfile_test: FAIL self-test: '$what': the mutation changed nothing"
      bad=$((bad + 1))
    elif out=$(bash "$self" "$r" "$binary" 2>&1); then
      echo "dockerfile_test: FAIL self-test: '$what' passed the check"
      bad=$((bad + 1))
    elif ! grep -qF -- "$expect" <<<"$out"; then
      echo "dockerfile_test: FAIL self-test: '$what' failed without \"$expect\":"
      echo "$out"
      bad=$((bad + 1))
    else
      echo "dockerfile_test: ok self-test: catches $what: $(grep -F -- "$expect" <<<"$out" | head -1)"
    fi
  done
  ((bad == 0)) && echo "dockerfile_test: self-test PASS" || echo "dockerfile_test: self-test FAIL ($bad)"
  exit $((bad > 0))
fi

root=${1:?usage: dockerfile_test.sh REPO_ROOT [BINARY]}
binary=${2:-}
df=$root/deploy/docker/Dockerfile

fails=0
fail() {
  echo "dockerfile_test: FAIL: $*" >&2
  fails=$((fails + 1))
}
ok() { echo "dockerfile_test: ok $*"; }

[[ -f $df ]] || {
  echo "dockerfile_test: FAIL: no $df" >&2
  exit 1
}

# Instructions, one per line: continuation lines joined, comments dropped.
mapfile -t instr < <(sed -e '/^[[:space:]]*#/d' "$df" | sed -e ':a' -e '/\\$/{N;s/\\\n/ /;ba' -e '}' |
  sed -e 's/[[:space:]]\+/ /g' -e 's/^ //' | grep -v '^$')

# Stages: the instructions of the first FROM ... AS build, and of the last FROM.
stage_of=()
stage=-1
for i in "${!instr[@]}"; do
  [[ ${instr[$i]} =~ ^FROM\  ]] && stage=$((stage + 1))
  stage_of[$i]=$stage
done
last_stage=$stage
((last_stage >= 1)) || fail "expected a multi-stage Dockerfile (build + runtime)"

# apt-get install packages of one stage.
apt_packages() {
  local s=$1 i
  for i in "${!instr[@]}"; do
    [[ ${stage_of[$i]} == "$s" && ${instr[$i]} =~ ^RUN\  ]] || continue
    grep -oE 'apt-get install [^&;|]*' <<<"${instr[$i]}" | sed -e 's/apt-get install//' |
      tr ' ' '\n' | grep -vE '^(-.*)?$' || true
  done | sort -u
}

# .dockerignore patterns (simple ones: exact paths and **/name).
ignored() {
  local path=${1%/} pat
  [[ -f $root/.dockerignore ]] || return 1
  while IFS= read -r pat; do
    pat=${pat%/}
    [[ -z $pat || $pat == \#* ]] && continue
    if [[ $path == "$pat" || $path == "$pat"/* ]]; then return 0; fi
    if [[ $pat == '**/'* && ($path == "${pat#'**/'}" || $path == */"${pat#'**/'}" || $path == */"${pat#'**/'}"/*) ]]; then
      return 0
    fi
  done <"$root/.dockerignore"
  return 1
}

# 1. COPY/ADD sources from the context.
copied=()
for line in "${instr[@]}"; do
  [[ $line =~ ^(COPY|ADD)\  ]] || continue
  read -r -a words <<<"${line#* }"
  [[ ${words[0]} == \[* ]] && {
    fail "JSON-form COPY not supported by this check: $line"
    continue
  }
  args=()
  from=
  for w in "${words[@]}"; do
    if [[ $w == --from=* ]]; then from=${w#--from=}; elif [[ $w != --* ]]; then args+=("$w"); fi
  done
  ((${#args[@]} >= 2)) || {
    fail "COPY without source and destination: $line"
    continue
  }
  [[ -n $from ]] && continue
  for src in "${args[@]:0:${#args[@]}-1}"; do
    src=${src#./}
    if [[ ! -e $root/$src ]]; then
      fail "COPY source $src does not exist in the repository"
    elif ignored "$src"; then
      fail "COPY source $src is excluded by .dockerignore"
    else
      copied+=("${src%/}")
    fi
  done
done
((${#copied[@]} > 0)) && ok "COPY sources exist and are in the build context: ${copied[*]}"

# 2. What CMake reads must be copied.
mapfile -t cmake_files < <(cd "$root" && find -L CMakeLists.txt cmake apps src -name CMakeLists.txt -o -name '*.cmake' 2>/dev/null)
mapfile -t needed < <(cd "$root" && grep -ohE '\$\{PROJECT_SOURCE_DIR\}/[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)?' "${cmake_files[@]}" |
  sed -e 's|${PROJECT_SOURCE_DIR}/||' | sort -u)
fails_before=$fails
for n in "${needed[@]}"; do
  top=${n%%/*}
  [[ $top == tests || $top == bench ]] && continue # not configured in the image (BUILD_TESTING/BENCH off)
  found=0
  for c in "${copied[@]}"; do
    [[ $n == "$c" || $n == "$c"/* ]] && found=1
  done
  ((found)) || fail "the CMake files read \${PROJECT_SOURCE_DIR}/$n, which the Dockerfile does not COPY"
done
((fails == fails_before)) && ok "every \${PROJECT_SOURCE_DIR}/ path the CMake files read is copied (${needed[*]:-none})"

# 3. ENTRYPOINT <-> CMake target <-> COPY --from=build.
fails_before=$fails
target=$(grep -oE 'add_executable\(([A-Za-z0-9_-]+)' "$root/apps/rollsafe/CMakeLists.txt" | head -1 | sed 's/add_executable(//')
entry_line=$(printf '%s\n' "${instr[@]}" | grep -E '^ENTRYPOINT ' | tail -1 || true)
entry=$(sed -nE 's/^ENTRYPOINT \[ ?"([^"]+)".*/\1/p' <<<"$entry_line")
[[ -n $entry ]] || fail "no exec-form ENTRYPOINT [\"/path/binary\", ...]"
[[ $(basename "${entry:-x}") == "$target" ]] ||
  fail "ENTRYPOINT runs $(basename "${entry:-?}"), the CMake target in apps/rollsafe/CMakeLists.txt is $target"
grep -qE -- "--target $target( |$)" <<<"$(printf '%s\n' "${instr[@]}" | grep -E '^RUN ')" ||
  fail "the build stage does not build --target $target"
copy_from=$(printf '%s\n' "${instr[@]}" | grep -E '^COPY --from=build ' || true)
[[ $(wc -l <<<"$copy_from") == 1 && -n $copy_from ]] || fail "expected exactly one COPY --from=build (the binary)"
read -r -a cf <<<"$copy_from"
[[ ${cf[2]:-} == */apps/rollsafe/$target && ${cf[3]:-} == "$entry" ]] ||
  fail "COPY --from=build ${cf[2]:-?} ${cf[3]:-?} should copy .../apps/rollsafe/$target to $entry"
printf '%s\n' "${instr[@]}" | grep -qE '^USER (65532|[a-z]+)(:|$)' || fail "runtime stage has no non-root USER"
printf '%s\n' "${instr[@]}" | grep -qx 'STOPSIGNAL SIGTERM' || fail "no STOPSIGNAL SIGTERM"
printf '%s\n' "${instr[@]}" | grep -qE '^EXPOSE .*8080' || fail "EXPOSE lacks 8080"
((fails == fails_before)) && ok "ENTRYPOINT $entry = CMake target $target, copied from the build stage"

# 4. Build packages = install-deps.sh minus what only tests, benchmarks, the drill and tools need.
not_build='ccache curl procps clang-format sqlite3 postgresql redis-server libgtest-dev libgmock-dev libbenchmark-dev nginx libnginx-mod-http-lua wrk chromium python3 kubectl kubernetes-client nodejs npm'
mapfile -t deps < <(sed -n '/^PKGS=(/,/^)/p' "$root/scripts/install-deps.sh" | sed -e '1d;$d' -e 's/#.*//' | tr ' ' '\n' | grep -v '^$' | sort -u)
mapfile -t build_pkgs < <(apt_packages 0)
want=$(printf '%s\n' "${deps[@]}" | grep -vxF -f <(tr ' ' '\n' <<<"$not_build") | sort -u)
have=$(printf '%s\n' "${build_pkgs[@]}" | sort -u)
missing=$(comm -23 <(echo "$want") <(echo "$have") | tr '\n' ' ')
extra=$(comm -13 <(echo "$want") <(echo "$have") | tr '\n' ' ')
[[ -z $missing ]] || fail "scripts/install-deps.sh installs ${missing}but the build stage does not (add it there, or to not_build in this test)"
[[ -z $extra ]] || fail "the build stage installs ${extra}which scripts/install-deps.sh does not"
[[ -z $missing && -z $extra ]] && ok "build stage packages = install-deps.sh build subset (${#build_pkgs[@]})"

# 5. Runtime libraries of the real binary.
if [[ -n $binary ]]; then
  if [[ ! -x $binary ]]; then
    fail "binary $binary not found"
  elif ! command -v ldd >/dev/null || ! command -v dpkg >/dev/null; then
    echo "dockerfile_test: skip runtime-library check (no ldd or dpkg)"
  else
    mapfile -t runtime_pkgs < <(apt_packages "$last_stage")
    in_slim='libc6 libstdc++6 libgcc-s1 libzstd1 zlib1g liblzma5'
    # Only the libraries the binary itself links (DT_NEEDED) must be listed: apt installs their
    # own dependencies (libpq5 brings Kerberos, LDAP, GnuTLS…), which ldd also prints.
    direct_libs=" $(objdump -p "$binary" | awk '$1 == "NEEDED" {print $2}' | tr '\n' ' ') "
    while read -r lib path; do
      case $lib in linux-vdso* | ld-linux* | libasan* | libubsan* | liblsan* | libtsan*) continue ;; esac
      [[ $direct_libs == *" $lib "* ]] || continue
      [[ $path == /* ]] || {
        fail "$lib: not found by ldd"
        continue
      }
      real=$(readlink -f "$path")
      pkg=$(dpkg -S "$real" 2>/dev/null || dpkg -S "$path" 2>/dev/null || true)
      pkg=${pkg%%:*}
      if [[ -z $pkg ]]; then
        fail "$lib ($real) belongs to no Debian package"
      elif [[ " ${runtime_pkgs[*]} $in_slim " != *" $pkg "* ]]; then
        fail "$(basename "$binary") needs $lib from $pkg, which the runtime stage does not install"
      else
        ok "$lib <- $pkg"
      fi
    done < <(ldd "$binary" | awk '/=>/ {print $1, $3} !/=>/ {print $1, $1}')
  fi
fi

if ((fails)); then
  echo "dockerfile_test: FAIL ($fails)"
  exit 1
fi
echo "dockerfile_test: PASS"

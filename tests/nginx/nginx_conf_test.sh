#!/usr/bin/env bash
# nginx_conf_test.sh — `nginx -t` accepts the shipped standalone config: deploy/nginx/
# rollsafe.conf (http-level) with the rollsafe-proxy.conf and rollsafe-retry.conf it
# includes, copied unchanged into a temporary prefix and wrapped in a minimal main context
# (pid, error_log and temp paths in the prefix, events {}, http { include rollsafe.conf; }).
#
# Usage: tests/nginx/nginx_conf_test.sh [SOURCE_DIR]
#   SOURCE_DIR defaults to the repository this script is in.
# Env:   NGINX (default: nginx from PATH, else /usr/sbin/nginx)
# Exit:  0 accepted, 1 rejected (nginx's output on stderr), 2 usage or nginx missing.
set -euo pipefail

if (($# > 1)); then
  echo "usage: $0 [SOURCE_DIR]" >&2
  exit 2
fi
src=${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
dir=$src/deploy/nginx
for f in rollsafe.conf rollsafe-proxy.conf rollsafe-retry.conf; do
  [[ -f $dir/$f ]] || { echo "nginx_conf_test: no such file: $dir/$f" >&2; exit 2; }
done

nginx=${NGINX:-}
if [[ -z $nginx ]]; then
  if command -v nginx >/dev/null 2>&1; then
    nginx=$(command -v nginx)
  elif [[ -x /usr/sbin/nginx ]]; then
    nginx=/usr/sbin/nginx
  fi
fi
[[ -n $nginx ]] || { echo "nginx_conf_test: nginx not found (apt-get install nginx)" >&2; exit 2; }

prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
mkdir -p "$prefix/conf" "$prefix/logs" "$prefix/tmp"
# Relative includes resolve against the directory of the -c file, as in /etc/nginx/.
cp "$dir/rollsafe.conf" "$dir/rollsafe-proxy.conf" "$dir/rollsafe-retry.conf" "$prefix/conf/"
cat >"$prefix/conf/nginx.conf" <<CONF
pid $prefix/logs/nginx.pid;
error_log $prefix/logs/error.log;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $prefix/tmp/client_body;
    proxy_temp_path $prefix/tmp/proxy;
    fastcgi_temp_path $prefix/tmp/fastcgi;
    uwsgi_temp_path $prefix/tmp/uwsgi;
    scgi_temp_path $prefix/tmp/scgi;
    include rollsafe.conf;
}
CONF

if ! out=$("$nginx" -t -p "$prefix/" -c "$prefix/conf/nginx.conf" -e "$prefix/logs/error.log" 2>&1); then
  echo "nginx_conf_test: FAIL: $nginx -t rejected deploy/nginx/rollsafe.conf:" >&2
  echo "$out" >&2
  exit 1
fi
# The included files were really read (nginx -T lists every file it parsed).
dump=$("$nginx" -T -p "$prefix/" -c "$prefix/conf/nginx.conf" -e "$prefix/logs/error.log" 2>&1) || true
for f in rollsafe.conf rollsafe-proxy.conf rollsafe-retry.conf; do
  grep -qF "# configuration file $prefix/conf/$f:" <<<"$dump" ||
    { echo "nginx_conf_test: FAIL: nginx did not read $f:" >&2; echo "$dump" >&2; exit 1; }
done
echo "nginx_conf_test: ok: $("$nginx" -v 2>&1 | sed 's/^.*nginx\//nginx /') accepts deploy/nginx/rollsafe.conf"

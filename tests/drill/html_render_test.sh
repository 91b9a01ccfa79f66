#!/usr/bin/env bash
# html_render_test.sh — renders a drill HTML report (`rollsafe drill --html`) in headless
# Chromium and checks that the page works without script or network:
#   - the DOM after rendering has <svg id="timeline"> with <rect> children and <svg id="latency">;
#   - the screenshot (1280 px wide) exists and is not tiny (a blank page compresses to a few KB);
#   - Chromium reported no page errors (uncaught exceptions, failed loads of the page's file).
#
# Usage: tests/drill/html_render_test.sh REPORT.html [SCREENSHOT.png]
#   SCREENSHOT.png defaults to a temporary file that is removed afterwards.
# Env:   CHROMIUM (default: chromium, else chromium-browser, else google-chrome)
#        MIN_PNG_BYTES (default 20000)
# Exit:  0 ok, 1 a check failed, 2 usage or Chromium missing.
set -euo pipefail

fail() {
  echo "html_render_test: FAIL: $*" >&2
  exit 1
}

if (($# < 1 || $# > 2)); then
  echo "usage: $0 REPORT.html [SCREENSHOT.png]" >&2
  exit 2
fi
html=$1
[[ -f $html ]] || { echo "html_render_test: no such file: $html" >&2; exit 2; }
html_abs=$(cd "$(dirname "$html")" && pwd)/$(basename "$html")

browser=${CHROMIUM:-}
if [[ -z $browser ]]; then
  for b in chromium chromium-browser google-chrome; do
    if command -v "$b" >/dev/null 2>&1; then
      browser=$b
      break
    fi
  done
fi
[[ -n $browser ]] || { echo "html_render_test: chromium not found (apt-get install chromium)" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
png=${2:-$work/page.png}
rm -f "$png"
min_png=${MIN_PNG_BYTES:-20000}

# A fresh profile per run; no network is needed, so none is reachable by accident either.
flags=(--headless=new --no-sandbox --disable-gpu --hide-scrollbars --no-first-run
  --no-default-browser-check --disable-extensions --user-data-dir="$work/profile"
  --window-size=1280,2000)
url="file://$html_abs"

if ! timeout 120 "$browser" "${flags[@]}" --screenshot="$png" "$url" \
  >"$work/shot.out" 2>"$work/shot.err"; then
  cat "$work/shot.err" >&2
  fail "chromium --screenshot exited non-zero"
fi
if ! timeout 120 "$browser" "${flags[@]}" --dump-dom "$url" \
  >"$work/dom.html" 2>"$work/dom.err"; then
  cat "$work/dom.err" >&2
  fail "chromium --dump-dom exited non-zero"
fi

# Page errors only: Chromium also prints harmless dbus/gpu/sandbox noise on stderr.
if grep -hE "Uncaught|ERROR:.*file://|Failed to load resource|net::ERR_" \
  "$work/shot.err" "$work/dom.err" >"$work/page-errors.txt"; then
  cat "$work/page-errors.txt" >&2
  fail "chromium reported errors about the page"
fi

python3 - "$work/dom.html" <<'PY' || fail "DOM check"
import sys
from html.parser import HTMLParser

class P(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack = []          # ids of the open <svg> elements (None when no id)
        self.svgs = {}           # id -> {tag: count} of its descendants
        self.scripts = 0
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        for sid in self.stack:
            if sid:
                self.svgs[sid][tag] = self.svgs[sid].get(tag, 0) + 1
        if tag == "svg":
            sid = a.get("id")
            if sid:
                self.svgs.setdefault(sid, {})
            self.stack.append(sid)
    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag == "svg":
            self.stack.pop()
    def handle_endtag(self, tag):
        if tag == "svg" and self.stack:
            self.stack.pop()

dom = open(sys.argv[1], encoding="utf-8", errors="replace").read()
p = P()
p.feed(dom)
problems = []
if "timeline" not in p.svgs:
    problems.append('no <svg id="timeline"> in the rendered DOM')
elif p.svgs["timeline"].get("rect", 0) == 0:
    problems.append('<svg id="timeline"> has no <rect> children')
if "latency" not in p.svgs:
    problems.append('no <svg id="latency"> in the rendered DOM')
if p.scripts:
    problems.append(f"{p.scripts} <script> element(s) in the page")
for msg in problems:
    print("html_render_test: " + msg, file=sys.stderr)
if not problems:
    t = p.svgs["timeline"]
    print(f"html_render_test: DOM ok (timeline: {t.get('rect', 0)} rect, "
          f"latency: {p.svgs['latency'].get('rect', 0)} rect)")
sys.exit(1 if problems else 0)
PY

[[ -s $png ]] || fail "no screenshot written to $png"
size=$(stat -c %s "$png")
((size >= min_png)) || fail "screenshot is only $size bytes (< $min_png): blank page?"
# The PNG signature and a 1280-px-wide IHDR: the page was rendered at the asked width.
python3 - "$png" <<'PY' || fail "screenshot is not a 1280-px-wide PNG"
import struct, sys
data = open(sys.argv[1], "rb").read(32)
if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
    sys.exit(1)
w, h = struct.unpack(">II", data[16:24])
print(f"html_render_test: screenshot {w}x{h}")
sys.exit(0 if w == 1280 else 1)
PY

echo "html_render_test: PASS ($html, screenshot $size bytes${2:+ at $png})"

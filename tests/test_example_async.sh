#!/bin/sh
# The event-loop examples (examples/async: libevent and libuv HTTP services
# over cachet_async_*), run on a free loopback port with the memory backend
# and asked over HTTP with curl: a GET of a new key runs the creator (on a
# worker thread) and returns its value, the second GET returns the same, a
# PUT (libevent) is read back, a DELETE then a GET makes the creator run
# again; SIGTERM makes the program close its queue and exit 0.
# Prints "N passed, N failed"; exits 1 when anything failed, 77 (skip)
# when neither example was built or curl is missing.
builddir=${CACHET_BUILDDIR:-$(cd "$(dirname "$0")/.." && pwd)}
tmp=$(mktemp -d /tmp/cachet-async-ex.XXXXXX) || exit 99
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
unset CACHET_CONFIG
pass=0
fail=0
ran=0
ok()  { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "FAIL - $1"; }
command -v curl >/dev/null 2>&1 || { echo "skip: no curl"; exit 77; }

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# body of METHOD URL [DATA] in $tmp/body, HTTP code on stdout
req() {
    if [ -n "$3" ]; then
        curl -s -m 10 -o "$tmp/body" -w '%{http_code}' -X "$1" --data-binary "$3" "$2"
    else
        curl -s -m 10 -o "$tmp/body" -w '%{http_code}' -X "$1" "$2"
    fi
}
expect() {   # name code want_code want_body
    if [ "$2" = "$3" ] && [ "$(cat "$tmp/body")" = "$4" ]; then
        ok "$1"
    else
        bad "$1: HTTP $2 '$(cat "$tmp/body")', wanted $3 '$4'"
    fi
}

for ex in libevent_http libuv_http; do
    bin="$builddir/examples/async/$ex"
    [ -x "$bin" ] || { echo "# $ex not built (its library is missing)"; continue; }
    ran=1
    port=$(free_port)
    "$bin" "$port" >"$tmp/$ex.out" 2>"$tmp/$ex.err" &
    pid=$!
    i=0
    while ! grep -q listening "$tmp/$ex.out" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 300 ] || ! kill -0 "$pid" 2>/dev/null; then
            bad "$ex did not start: $(cat "$tmp/$ex.err")"
            continue 2
        fi
        sleep 0.1
    done
    url="http://127.0.0.1:$port"
    expect "$ex: GET of a new key runs the creator" "$(req GET "$url/alpha")" 200 "computed for alpha"
    expect "$ex: a second GET is the cached value" "$(req GET "$url/alpha")" 200 "computed for alpha"
    if [ "$ex" = libevent_http ]; then
        expect "$ex: PUT stores" "$(req PUT "$url/beta" "stored value")" 200 "ok"
        expect "$ex: GET reads the PUT back" "$(req GET "$url/beta")" 200 "stored value"
    fi
    expect "$ex: DELETE" "$(req DELETE "$url/alpha")" 200 "ok"
    expect "$ex: GET after DELETE creates again" "$(req GET "$url/alpha")" 200 "computed for alpha"
    code=$(req GET "$url/")
    [ "$code" = 400 ] && ok "$ex: no key is a 400" || bad "$ex: GET / gave $code"
    # 20 clients at once: every one answered with its own key's value
    j=0
    curls=
    while [ $j -lt 20 ]; do
        curl -s -m 10 "$url/k$j" >"$tmp/c$j" &
        curls="$curls $!"
        j=$((j + 1))
    done
    for c in $curls; do wait "$c"; done
    wait_ok=1
    j=0
    while [ $j -lt 20 ]; do
        [ "$(cat "$tmp/c$j")" = "computed for k$j" ] || wait_ok=0
        j=$((j + 1))
    done
    [ $wait_ok = 1 ] && ok "$ex: 20 concurrent clients answered" || bad "$ex: some of 20 concurrent clients got no answer"
    kill -TERM "$pid"
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do i=$((i + 1)); sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        bad "$ex did not exit on SIGTERM"
        kill -KILL "$pid"
    else
        wait "$pid"
        st=$?
        [ $st = 0 ] && ok "$ex exits 0 on SIGTERM" || bad "$ex exited $st: $(cat "$tmp/$ex.err")"
    fi
    pid=
done
[ $ran = 1 ] || { echo "skip: no example built"; exit 77; }
echo "$pass passed, $fail failed"
[ $fail = 0 ]

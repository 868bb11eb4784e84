#!/bin/sh
# The example third-party proxy (examples/proxy/count_proxy.c), built the
# way a user builds one: against the *installed* headers and library, with
# `pkg-config --cflags --libs cachet`, then loaded by absolute path through
# cachet_proxies; and the built-in log proxy that debug_cache_backend adds.
# Prints "N passed, N failed"; exits 1 when anything failed.
builddir=${CACHET_BUILDDIR:-$(cd "$(dirname "$0")/.." && pwd)}
srcdir=${CACHET_SRCDIR:-$builddir}
cachet="$builddir/src/cachet"
tmp=$(mktemp -d /tmp/cachet-proxy.XXXXXX) || exit 99
trap 'rm -rf "$tmp"' EXIT
unset CACHET_CONFIG
pass=0
fail=0
ok()  { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "FAIL - $1"; }

# install what a proxy builds against -- the library, the headers, the
# pkg-config file -- into a scratch root, as `make install` does for a user
# (not the plugins: libtool relinks those in place as it installs them,
# under the feet of the suites running beside this one)
if make -C "$builddir" install-libLTLIBRARIES install-cachetincludeHEADERS install-pkgconfigDATA \
        DESTDIR="$tmp/root" >"$tmp/install.log" 2>&1; then
    ok "the library, headers and cachet.pc install into a scratch root"
else
    bad "make install: $(tail -5 "$tmp/install.log")"
fi
pc=$(find "$tmp/root" -name cachet.pc | head -1)
if [ -n "$pc" ]; then ok "cachet.pc is installed"; else bad "no cachet.pc installed"; fi
flags=$(PKG_CONFIG_SYSROOT_DIR="$tmp/root" PKG_CONFIG_PATH=$(dirname "$pc") \
        pkg-config --cflags --libs cachet 2>"$tmp/pc.err")
case "$flags" in
    *"$tmp/root"*include*-lcachet*) ok "pkg-config gives the installed headers and -lcachet" ;;
    *) bad "pkg-config --cflags --libs cachet gave '$flags' $(cat "$tmp/pc.err")" ;;
esac
# shellcheck disable=SC2086
if ${CC:-cc} -shared -fPIC -Wall -Werror -o "$tmp/count_proxy.so" \
        "$srcdir/examples/proxy/count_proxy.c" $flags 2>"$tmp/cc.err"; then
    ok "the example proxy builds against the installed headers"
else
    bad "cc: $(head -c 600 "$tmp/cc.err")"
fi

"$cachet" -o backend=memory -o "cachet_proxies=$tmp/count_proxy.so" \
    -o "cachet_proxy_argument=$tmp/count_proxy.so:label:example" check >"$tmp/out" 2>"$tmp/err"
st=$?
if [ "$st" = 0 ]; then ok "a region opens with the example proxy in its chain"; else
    bad "check with the example proxy: exit $st: $(head -c 400 "$tmp/err")"; fi
if grep -q "example_hits" "$tmp/out" && grep "example_hits" "$tmp/out" | grep -q "1"; then
    ok "the proxy saw the probe's read (its report line says 1 hit)"
else
    bad "no 'example_hits ... 1' in: $(head -c 400 "$tmp/out")"
fi

"$cachet" -o backend=memory -o "cachet_proxies=$tmp/count_proxy.so" \
    -o "cachet_proxy_argument=$tmp/count_proxy.so:colour:red" check >"$tmp/out" 2>"$tmp/err"
st=$?
if [ "$st" = 2 ] && grep -q "colour" "$tmp/err"; then ok "an unknown proxy argument is an error naming it"
else bad "unknown proxy argument: exit $st, stderr: $(head -c 300 "$tmp/err")"; fi

"$cachet" -o backend=memory -o "cachet_proxy_argument=near:max_count:10" check >"$tmp/out" 2>"$tmp/err"
st=$?
if [ "$st" = 2 ] && grep -q "cachet_proxy_argument" "$tmp/err" && grep -q "near" "$tmp/err"; then
    ok "an argument for a proxy not in cachet_proxies is an error naming the option"
else bad "argument for an absent proxy: exit $st, stderr: $(head -c 300 "$tmp/err")"; fi

"$cachet" -o backend=memory -o "cachet_proxies=nosuchproxy" check >"$tmp/out" 2>"$tmp/err"
st=$?
if [ "$st" = 2 ] && grep -q "nosuchproxy" "$tmp/err"; then ok "an unknown proxy name is an error naming it"
else bad "unknown proxy: exit $st, stderr: $(head -c 300 "$tmp/err")"; fi

"$cachet" -o backend=memory -o proxies=foo.Bar check >"$tmp/out" 2>"$tmp/err"
if grep -q "cachet_proxies" "$tmp/err"; then ok "oslo's proxies option is refused and points to cachet_proxies"
else bad "proxies=foo.Bar: $(head -c 300 "$tmp/err")"; fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]

#!/bin/sh
# The README's C example, as a reader would use it: pulled out of
# README.md's first ```c block, compiled as it stands (a complete program,
# -std=c11 -Wall -Wextra -Werror) against the built library, and run on a
# memory region, the null backend and a missing config file.
# Prints "N passed, N failed"; exits 1 when anything failed.
builddir=${CACHET_BUILDDIR:-$(cd "$(dirname "$0")/.." && pwd)}
srcdir=${CACHET_SRCDIR:-$builddir}
tmp=$(mktemp -d /tmp/cachet-readme.XXXXXX) || exit 99
trap 'rm -rf "$tmp"' EXIT
unset CACHET_CONFIG CACHET_PLUGIN_PATH
pass=0
fail=0
ok()  { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "FAIL - $1"; }

# the first ```c block after the "## Using it from C" heading
awk '/^## Using it from C/ { sec = 1 }
     sec && !code && /^```c$/ { code = 1; next }
     code && /^```$/ { exit }
     code { print }' "$srcdir/README.md" >"$tmp/az.c"
if grep -q 'int main' "$tmp/az.c"; then ok "README.md has a C example with a main"; else
    bad "no \`\`\`c block with main() under '## Using it from C' in README.md"; fi

# built against the tree's headers and libcachet, as pkg-config would give
# them installed (rpath: the build tree's library finds its own plugins),
# with the build's compiler and flags (a sanitizer build's library needs
# its runtime in the program too)
# shellcheck disable=SC2086
if ${CACHET_CC:-cc} ${CACHET_CFLAGS:-} -std=c11 -Wall -Wextra -Werror -o "$tmp/az" "$tmp/az.c" \
        -I"$srcdir/include" ${CACHET_LDFLAGS:-} -L"$builddir/.libs" -Wl,-rpath,"$builddir/.libs" \
        -lcachet 2>"$tmp/cc.err"; then
    ok "the example compiles as it stands, without a warning"
else
    bad "cc: $(head -c 800 "$tmp/cc.err")"
fi

printf '[cache]\nenabled = true\nbackend = dogpile.cache.memory\n' >"$tmp/memory.conf"
"$tmp/az" "$tmp/memory.conf" compute-7 >"$tmp/out" 2>"$tmp/err"
st=$?
if [ "$st" = 0 ] && [ "$(grep -c '^compute-7 is in az-1$' "$tmp/out")" = 2 ]; then
    ok "on memory it prints the zone twice"
else
    bad "memory: exit $st: $(cat "$tmp/out" "$tmp/err" | head -c 400)"
fi
grep -q '^database queried 1 time(s)$' "$tmp/out" && ok "the second ask is served by the cache" ||
    bad "memory: $(tail -n 1 "$tmp/out")"

printf '[cache]\nbackend = dogpile.cache.memory\n' >"$tmp/disabled.conf"
"$tmp/az" "$tmp/disabled.conf" compute-7 >"$tmp/out" 2>"$tmp/err"
if grep -q '^database queried 2 time(s)$' "$tmp/out"; then ok "enabled = false: the null backend, queried twice"
else bad "disabled: $(cat "$tmp/out" "$tmp/err" | head -c 400)"; fi

"$tmp/az" "$tmp/no-such.conf" compute-7 >"$tmp/out" 2>"$tmp/err"
st=$?
if [ "$st" = 1 ] && grep -q "no-such.conf" "$tmp/err"; then ok "a missing config: exit 1, the message names the file"
else bad "missing config: exit $st: $(head -c 300 "$tmp/err")"; fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]

#!/bin/sh
# `make install DESTDIR=...` as a distribution's package build runs it: what
# lands where (the library, the plugins without their .la files, the
# headers, cachet.pc, the man pages, the docs), that the installed tool runs
# on the installed library and plugins, and that `make uninstall` takes
# every file away again.
# Prints "N passed, N failed"; exits 1 when anything failed.
builddir=${CACHET_BUILDDIR:-$(cd "$(dirname "$0")/.." && pwd)}
srcdir=${CACHET_SRCDIR:-$builddir}
tmp=$(mktemp -d /tmp/cachet-install.XXXXXX) || exit 99
trap 'rm -rf "$tmp"' EXIT
unset CACHET_CONFIG CACHET_PLUGIN_PATH
root="$tmp/root"
pass=0
fail=0
ok()  { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "FAIL - $1"; }
present() { if [ -e "$root$1" ]; then ok "installed: $1"; else bad "not installed: $1"; fi; }

# the configured directories, one a line (the Makefile writes them)
stamp="$builddir/installdirs.stamp"
[ -s "$stamp" ] || { echo "no $stamp: build first"; exit 99; }
libdir=$(sed -n 3p "$stamp")
bindir=$(sed -n 4p "$stamp")
backenddir=$(sed -n 5p "$stamp")
proxydir=$(sed -n 6p "$stamp")
docdir=$(sed -n 7p "$stamp")
mandir=$(sed -n 8p "$stamp")

if make -C "$builddir" install DESTDIR="$root" >"$tmp/install.log" 2>&1; then
    ok "make install DESTDIR= succeeds"
else
    bad "make install: $(tail -5 "$tmp/install.log")"
fi

# ---- no .la for plugins (they are dlopen()ed, never linked against) ----
las=$(find "$root$backenddir" "$root$proxydir" -name '*.la' 2>/dev/null)
if [ -z "$las" ]; then ok "no .la file in the plugin directories"; else bad "plugin .la files installed: $las"; fi
present "$backenddir/null.so"
present "$backenddir/memory.so"
for so in "$builddir"/backends/.libs/*.so; do
    present "$backenddir/$(basename "$so")"
done
present "$libdir/libcachet.so.0"
present "$bindir/cachet"
[ -n "$(find "$root" -path '*/include/cachet/cachet.h')" ] && ok "cachet.h installed" || bad "no cachet.h"
[ -n "$(find "$root" -path '*/include/cachet/backend.h')" ] && ok "backend.h installed" || bad "no backend.h"
[ -n "$(find "$root" -name cachet.pc)" ] && ok "cachet.pc installed" || bad "no cachet.pc"

# ---- every man page of the tree, in its section's directory ----
for page in "$srcdir"/docs/cachet.1 "$srcdir"/docs/man/*.[0-9]; do
    [ -e "$page" ] || continue
    name=$(basename "$page")
    sect=${name##*.}
    if [ -e "$root$mandir/man$sect/$name" ]; then ok "man page $name installed"
    else bad "man page $name not installed under $mandir/man$sect"; fi
done
# ---- the docs ----
for doc in "$srcdir"/docs/*.md; do
    [ -e "$doc" ] || continue
    name=$(basename "$doc")
    if [ -e "$root$docdir/$name" ]; then ok "doc $name installed"
    else bad "doc $name not installed under $docdir"; fi
done

# ---- the installed tool, on the installed library and plugins (not the
# build tree's: the library must not be the build tree's either) ----
printf '[cache]\nenabled = true\nbackend = dogpile.cache.memory\n' >"$tmp/memory.conf"
LD_LIBRARY_PATH="$root$libdir" CACHET_PLUGIN_PATH="$root$backenddir" \
    "$root$bindir/cachet" -c "$tmp/memory.conf" check >"$tmp/out" 2>&1
st=$?
if [ "$st" = 0 ] && grep -q "backend: memory" "$tmp/out"; then ok "the installed cachet checks a memory region"
else bad "installed cachet check: exit $st: $(head -c 400 "$tmp/out")"; fi
LD_LIBRARY_PATH="$root$libdir" ldd "$root$bindir/cachet" >"$tmp/ldd" 2>&1
if grep -q "$root$libdir/libcachet.so.0" "$tmp/ldd"; then ok "the installed cachet links the installed libcachet"
else bad "ldd: $(grep cachet "$tmp/ldd")"; fi

# ---- uninstall leaves no file behind ----
if make -C "$builddir" uninstall DESTDIR="$root" >"$tmp/uninstall.log" 2>&1; then
    ok "make uninstall DESTDIR= succeeds"
else
    bad "make uninstall: $(tail -5 "$tmp/uninstall.log")"
fi
left=$(find "$root" -type f 2>/dev/null | head -5)
if [ -z "$left" ]; then ok "uninstall removes every installed file"; else bad "left after uninstall: $left"; fi

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]

#!/bin/sh
# The manual: every page renders at 80 columns without a warning
# (`MANWIDTH=80 man --warnings -l`), has a NAME line whatis can index,
# every .so link points to a page of the tree, and every function
# <cachet/cachet.h> and <cachet/backend.h> declare has a page of its own
# name (a page or a link), so that `man cachet_x` works for each.
# Prints "N passed, N failed"; exits 1 when anything failed.
builddir=${CACHET_BUILDDIR:-$(cd "$(dirname "$0")/.." && pwd)}
srcdir=${CACHET_SRCDIR:-$builddir}
tmp=$(mktemp -d /tmp/cachet-man.XXXXXX) || exit 99
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
ok()  { pass=$((pass + 1)); echo "ok - $1"; }
bad() { fail=$((fail + 1)); echo "FAIL - $1"; }

command -v man >/dev/null 2>&1 || { echo "man is not installed (scripts/setup-debian installs man-db)"; exit 77; }
man=$srcdir/docs/man
pages="$srcdir/docs/cachet.1 $(ls "$man"/*.[0-9])"

for page in $pages; do
    name=$(basename "$page")
    first=$(head -n 1 "$page")
    case "$first" in
    .so\ *)
        target=${first#.so }
        if [ -e "$man/$(basename "$target")" ] && [ "$(dirname "$target")" = "man${target##*.}" ]; then
            ok "$name links to $target"
        else
            bad "$name: .so $target names no page of docs/man (or the wrong man<N> directory)"
        fi
        continue ;;
    esac
    # LC_ALL=C.UTF-8: the warnings must not depend on the locale of the run
    LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$page" >"$tmp/out" 2>"$tmp/err"
    st=$?
    if [ "$st" = 0 ] && [ ! -s "$tmp/err" ] && [ -s "$tmp/out" ]; then
        ok "$name renders without warnings"
    else
        bad "$name: man exit $st: $(head -c 600 "$tmp/err")"
    fi
    if lexgrog "$page" >/dev/null 2>&1; then ok "$name has a NAME section whatis can parse"
    else bad "$name: lexgrog cannot parse its NAME section"; fi
done

# every public function has a page under its own name
for h in "$srcdir/include/cachet/cachet.h" "$srcdir/include/cachet/backend.h"; do
    # declarations: "type name(" at the start of a line or after a type
    sed -n 's/^[a-z_ ]*[ *]\(cachet_[a-z0-9_]*\)(.*/\1/p' "$h" | sort -u
done | sort -u >"$tmp/functions"
[ -s "$tmp/functions" ] || bad "no function found in the headers (the pattern is wrong)"
while read -r f; do
    case "$f" in cachet_backend_entry|cachet_proxy_entry) continue ;; esac   # a plugin's, see cachet-plugin(7)
    if [ -e "$man/$f.3" ]; then ok "$f has a page"; else bad "$f has no page docs/man/$f.3"; fi
done <"$tmp/functions"

# every option of src/options.def is described in cachet.conf(5)
sed -n 's/^OPTION([A-Z_]*, "\([a-z_]*\)".*/\1/p' "$srcdir/src/options.def" >"$tmp/options"
[ -s "$tmp/options" ] || bad "no option found in src/options.def (the pattern is wrong)"
while read -r o; do
    # as a bold word of a .B/.BR line (groff escapes no '_')
    if grep -E -q "^\.(B|BR) (.* )?\"?$o\"?( |$)" "$man/cachet.conf.5"; then ok "cachet.conf(5) describes $o"
    else bad "cachet.conf(5) does not describe the option $o"; fi
done <"$tmp/options"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]

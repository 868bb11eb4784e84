# CACHET_BACKEND_FAMILY(FAMILY, CONDITIONAL, BACKENDS, DEBIAN-PACKAGE, CHECK)
# Adds --enable-FAMILY / --disable-FAMILY for a family of backends that
# share a client library.  CHECK sets cachet_ok=yes when the library is
# usable.  Default (auto): build BACKENDS if it is.  --disable-FAMILY: leave
# them out without looking.  --enable-FAMILY: a missing library is an error
# that names DEBIAN-PACKAGE.  Defines the automake conditional CONDITIONAL,
# appends BACKENDS to CACHET_BACKENDS (or, with the reason, to
# CACHET_BACKENDS_OUT).
AC_DEFUN([CACHET_BACKEND_FAMILY], [
  AC_ARG_ENABLE([$1],
    [AS_HELP_STRING([--disable-$1], [leave out the $3 backend(s)])
AS_HELP_STRING([--enable-$1], [build the $3 backend(s); a missing $4 is an error (default: build them if $4 is installed)])],
    [], [enable_$1=auto])
  cachet_ok=no
  AS_IF([test "x$enable_$1" != xno], [$5])
  AS_IF([test "x$enable_$1" = xyes && test "x$cachet_ok" != xyes],
    [AC_MSG_ERROR([--enable-$1: the $3 backend(s) need the Debian package $4: apt-get install $4])])
  AS_IF([test "x$cachet_ok" = xyes],
    [CACHET_BACKENDS="$CACHET_BACKENDS $3"],
    [AS_IF([test "x$enable_$1" = xno],
      [CACHET_BACKENDS_OUT="$CACHET_BACKENDS_OUT $3 (--disable-$1);"],
      [CACHET_BACKENDS_OUT="$CACHET_BACKENDS_OUT $3 (no $4);"])])
  AM_CONDITIONAL([$2], [test "x$cachet_ok" = xyes])
])

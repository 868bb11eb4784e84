# CACHET_OPTIONAL_BACKEND(WITH-NAME, BACKENDS, DEBIAN-PACKAGE, CHECK)
# Adds --with-WITH-NAME.  CHECK sets cachet_ok=yes when the client library
# is usable.  Default (auto): build BACKENDS if it is.  --with-X: a missing
# library is an error that names DEBIAN-PACKAGE.  Defines the automake
# conditional BUILD_<WITH-NAME> and appends BACKENDS to CACHET_BACKENDS.
AC_DEFUN([CACHET_OPTIONAL_BACKEND], [
  AC_ARG_WITH([$1],
    [AS_HELP_STRING([--with-$1], [build the $2 backend(s) (default: if $3 is installed)])],
    [], [with_$1=auto])
  cachet_ok=no
  AS_IF([test "x$with_$1" != xno], [$4])
  AS_IF([test "x$with_$1" = xyes && test "x$cachet_ok" != xyes],
    [AC_MSG_ERROR([the $2 backend needs $1: install the Debian package $3 (apt-get install $3)])])
  AS_IF([test "x$cachet_ok" = xyes], [CACHET_BACKENDS="$CACHET_BACKENDS $2"])
  AM_CONDITIONAL(m4_toupper([BUILD_$1]), [test "x$cachet_ok" = xyes])
])

# CACHET_REQUIRE_PKG(VARIABLE-PREFIX, PKG-CONFIG-MODULE, DEBIAN-PACKAGE)
# Like PKG_CHECK_MODULES, but a failure tells the user which Debian package
# to install instead of pkg-config's generic advice.
AC_DEFUN([CACHET_REQUIRE_PKG], [
  PKG_CHECK_MODULES([$1], [$2], [],
    [AC_MSG_ERROR([$2 not found: install the Debian package $3 (apt-get install $3)])])
])

#!/bin/sh
# Generates configure and the Makefile.in files (none are committed).
set -e
cd "$(dirname "$0")"
autoreconf -fi

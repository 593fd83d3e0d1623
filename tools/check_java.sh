#!/usr/bin/env bash
# Spark needs a Java 17+ runtime. Fail early with an install hint instead of a
# stack trace from spark-submit later.
set -euo pipefail
java_bin="${JAVA_HOME:+$JAVA_HOME/bin/}java"
if ! command -v "$java_bin" >/dev/null 2>&1; then
  echo "error: Java 17+ is required by Spark and was not found (looked for '$java_bin')." >&2
  echo "  Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless" >&2
  echo "  macOS:         brew install openjdk@17" >&2
  echo "  then re-run 'make setup' (or set JAVA_HOME to the JDK folder)." >&2
  exit 1
fi
version_line="$("$java_bin" -version 2>&1 | head -n1)"
major="$(echo "$version_line" | sed -E 's/.*version "([0-9]+)(\.[0-9]+)*.*/\1/')"
if [ "$major" = "1" ]; then major=8; fi
if ! [ "$major" -ge 17 ] 2>/dev/null; then
  echo "error: Spark needs Java 17+, found: $version_line" >&2
  echo "  install openjdk-17 (Debian/Ubuntu: sudo apt-get install -y openjdk-17-jre-headless) and set JAVA_HOME." >&2
  exit 1
fi
echo "java ok: $version_line"

#!/usr/bin/env bash
# Installs Azurite, Microsoft's Azure Storage emulator, that tests/azurite.py starts for the azblob:// tests (a
# real Blob service on loopback: SharedKey and SAS signatures, block blobs, ranges, listings), from npm, once, into
# a cache outside the repository:
#
#   $BR_TEST_TOOLS/azurite/node_modules/.bin/azurite-blob   the npm package azurite at $AZURITE_VERSION
#   $BR_TEST_TOOLS/azurite/INSTALLED                         "azurite VERSION", written once it runs
#
# BR_TEST_TOOLS defaults to ~/.cache/backup-repository/test-tools (shared with scripts/build-test-tools.sh).
# Idempotent: when INSTALLED names the pin and the program is there, the script exits at once. A first install takes
# about 20 s and 190 MB (373 packages); deleting $BR_TEST_TOOLS/azurite is always safe. Needs Node.js and npm (any
# Node.js >= 10 for this pin; 3.36 and later want Node.js 21 or 22) and the npm registry; install scripts of the
# packages are not run (Azurite needs none).
set -euo pipefail

AZURITE_VERSION=3.35.0

TOOLS=${BR_TEST_TOOLS:-$HOME/.cache/backup-repository/test-tools}
mkdir -p "$TOOLS"
TOOLS=$(cd "$TOOLS" && pwd)
PREFIX=$TOOLS/azurite
PROGRAM=$PREFIX/node_modules/.bin/azurite-blob

installed() {
  [ -x "$PROGRAM" ] && grep -qx "azurite $AZURITE_VERSION" "$PREFIX/INSTALLED" 2>/dev/null
}
if installed; then
  echo "azurite $AZURITE_VERSION already installed in $PREFIX"
  exit 0
fi

for tool in node npm; do
  command -v "$tool" >/dev/null 2>&1 \
    || { echo "install-azurite: '$tool' is not installed (apt-get install nodejs npm)" >&2; exit 1; }
done

# One install at a time per cache directory; a second caller waits, then finds it installed.
exec 8>"$TOOLS/.lock-azurite"
flock 8
if installed; then
  echo "azurite $AZURITE_VERSION installed in $PREFIX by another run"
  exit 0
fi

step() { echo "[$(date +%H:%M:%S) +${SECONDS}s] $*"; }
step "azurite $AZURITE_VERSION: npm install into $PREFIX (node $(node --version), npm $(npm --version))"
rm -rf "$PREFIX"
mkdir -p "$PREFIX"
npm install --prefix "$PREFIX" --no-audit --no-fund --omit=dev --ignore-scripts --loglevel=error \
  "azurite@$AZURITE_VERSION"
"$PROGRAM" --version >/dev/null  # it runs on this Node.js
echo "azurite $AZURITE_VERSION" > "$PREFIX/INSTALLED"
step "done: $PROGRAM $("$PROGRAM" --version); $PREFIX holds $(du -sh "$PREFIX" | cut -f1)"

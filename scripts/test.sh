#!/usr/bin/env bash
# The README's test command: installs what the tests need beyond the Rust toolchain, then runs
# every test. Arguments go to `cargo test` (e.g. `scripts/test.sh --test integration ui`).
set -euo pipefail
cd "$(dirname "$0")/.."
# The web UI test (tests/integration/ui.rs) opens the page in headless Chromium, Debian's package.
if [ ! -x /usr/bin/chromium ]; then
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    $sudo apt-get update
    $sudo apt-get install -y --no-install-recommends chromium
fi
exec cargo test --release "$@"

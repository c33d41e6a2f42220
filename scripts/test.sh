#!/usr/bin/env bash
# The README's test command: installs what the tests need beyond the Rust toolchain, then runs
# every test. Arguments go to `cargo test` (e.g. `scripts/test.sh --test integration ui`).
set -euo pipefail
cd "$(dirname "$0")/.."
# The web UI test (tests/integration/ui.rs) opens the page in headless Chromium, and the shell
# test (tests/integration/shell.rs) types into `sluice shell` in a tmux pane, and the RocksDB state
# store (feature `rocksdb`, on for the tests) builds its bindings with libclang: Debian's packages.
missing=""
[ -x /usr/bin/chromium ] || missing="$missing chromium"
command -v tmux >/dev/null || missing="$missing tmux"
dpkg -s libclang-dev >/dev/null 2>&1 || missing="$missing libclang-dev"
if [ -n "$missing" ]; then
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    $sudo apt-get update
    $sudo apt-get install -y --no-install-recommends $missing
fi
exec cargo test --release --features rocksdb "$@"

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
# The S3 checkpoint test (tests/integration/s3_checkpoint.rs) runs moto's S3 server, from PyPI's
# moto[server], installed once into a virtual environment in the build cache and named to the test
# by SLUICE_MOTO_PYTHON.
moto_venv="$HOME/.cache/sluice/moto-5.2.1"
if ! "$moto_venv/bin/python" -c 'import moto.server' >/dev/null 2>&1; then
    rm -rf "$moto_venv"
    python3 -m venv "$moto_venv"
    "$moto_venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.1'
fi
export SLUICE_MOTO_PYTHON="$moto_venv/bin/python"
cargo test --release --features rocksdb "$@"
# The stateful operators' tests once more with their state on the RocksDB store (a test matrix
# over one set of tests: tests/integration/common.rs reads SLUICE_TEST_STATE_STORE), unless the
# arguments choose tests.
for arg in "$@"; do
    case "$arg" in
        --locked | --frozen | --offline | --no-fail-fast | --no-run) ;;
        *) exit 0 ;;
    esac
done
SLUICE_TEST_STATE_STORE=rocksdb cargo test --release --features rocksdb "$@" --test integration -- \
    aggregates:: chained:: dedup:: group_state:: output_modes:: partitioning:: recovery:: \
    session_windows:: state_work:: stream_join:: top_n:: watermarks:: worked_example::

#!/usr/bin/env bash
# The test command: bring up PostgreSQL and the tansu broker (scripts/test-env.sh),
# run `cargo test --all-targets` against them, stop the broker again if this
# run started it. A broker an earlier `scripts/test-env.sh` of this checkout left
# running is restarted with empty state first, so every run gets a fresh one.
# Without arguments it then fuzzes the read API (scripts/api-fuzz.sh, schemathesis).
# Extra arguments go to `cargo test` (and skip the fuzz), e.g.
#     scripts/test.sh -- --nocapture
#     scripts/test.sh --test store_pg
# CARGO_TARGET_DIR defaults to ~/.cache/appealflow/target (shared between runs).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

started_tansu=0
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ $started_tansu == 1 ]]; then
        bash "$repo/scripts/test-env.sh" stop || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

t0=$SECONDS
# Status lines arrive on stderr; stdout carries the export lines.
# A broker this checkout started earlier is restarted empty (APPEALFLOW_TANSU_FRESH=0 keeps it).
env_out=$(APPEALFLOW_TANSU_FRESH=${APPEALFLOW_TANSU_FRESH:-1} bash "$repo/scripts/test-env.sh" start)
eval "$env_out"
started_tansu=${APPEALFLOW_TEST_ENV_STARTED_TANSU:-0}
unset APPEALFLOW_TEST_ENV_STARTED_TANSU
export APPEALFLOW_TEST_PG_URL APPEALFLOW_TEST_KAFKA
echo "test-env: ready in $((SECONDS - t0)) s: APPEALFLOW_TEST_PG_URL=$APPEALFLOW_TEST_PG_URL APPEALFLOW_TEST_KAFKA=$APPEALFLOW_TEST_KAFKA" >&2

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/appealflow/target}
echo "cargo: CARGO_TARGET_DIR=$CARGO_TARGET_DIR; running cargo test --all-targets $*" >&2

t1=$SECONDS
rc=0
cargo test --all-targets "$@" </dev/null || rc=$?
if [[ $rc -eq 0 ]]; then
    echo "tests: passed ($((SECONDS - t1)) s)" >&2
    # The whole suite (no arguments) also fuzzes the read API from its OpenAPI document.
    if [[ $# -eq 0 ]]; then
        t2=$SECONDS
        bash "$repo/scripts/api-fuzz.sh" </dev/null || rc=$?
        echo "api fuzz: exit $rc ($((SECONDS - t2)) s)" >&2
    fi
else
    echo "tests: FAILED (cargo test exit code $rc, $((SECONDS - t1)) s)" >&2
fi
exit "$rc"

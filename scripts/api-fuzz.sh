#!/usr/bin/env bash
# Schema-driven fuzz of the read and write API: schemathesis (PyPI, installed once into
# ~/.cache/appealflow/venv) generates requests from /v1/openapi.json and sends them to
# `appealflow api` serving the replayed sample. Any 5xx, any answer the document does not
# describe (status, content type or body), fails. The seed is fixed so a red run replays;
# APPEALFLOW_FUZZ_SEED=random explores new cases. Called by scripts/test.sh after the tests.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
target=${CARGO_TARGET_DIR:-$HOME/.cache/appealflow/target}
bin=$target/debug/appealflow
venv=$HOME/.cache/appealflow/venv
if [[ ! -x $venv/bin/st ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "schemathesis==4.32.5"
fi

work=$(mktemp -d)
pid=
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    [[ -n $pid ]] && kill "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

"$bin" replay --config config/example.toml --db "sqlite://$work/fuzz.db" examples/sample.jsonl >/dev/null 2>&1
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" api --config config/example.toml --db "sqlite://$work/fuzz.db" --listen "127.0.0.1:$port" 2>"$work/api.log" &
pid=$!
for _ in $(seq 100); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/v1/health')" 2>/dev/null && break
    sleep 0.1
done

# Requests name the sample's project, so they reach the handlers rather than stop at its 404.
printf '[parameters]\n"path.project" = "acme"\n' >"$work/schemathesis.toml"
seed=()
[[ ${APPEALFLOW_FUZZ_SEED:-1} != random ]] && seed=(--seed "${APPEALFLOW_FUZZ_SEED:-1}")
cd "$work"
# Once as a reader (its commands are 403) and once as an operator: over a store with no
# command path, a valid command is the documented 503, anything else the 400 naming why.
for token in demo-token demo-operator-token; do
    "$venv/bin/st" run "http://127.0.0.1:$port/v1/openapi.json" \
        -H "Authorization: Bearer $token" \
        -c not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance \
        -n 30 "${seed[@]}"
done
echo "api fuzz: passed" >&2

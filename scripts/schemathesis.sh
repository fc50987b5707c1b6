#!/usr/bin/env bash
# Property-based tests of the running broker against openapi.yaml (schemathesis): requests are
# generated from the document, valid and invalid, and every answer is checked against it
# (status, media type, headers, schema, and that invalid requests are refused and valid ones
# accepted). Runs a dev-mode broker on a free loopback port in a scratch directory, with an
# admin writ (admin and auditor roles) for the admin routes and a dev identity token for
# POST /v1/writs. Exits non-zero on any failure.
#
#   scripts/schemathesis.sh [--max-examples N] [--seed N]
set -euo pipefail
cd "$(dirname "$0")/.."

examples=40
seed=$RANDOM
while [ $# -gt 0 ]; do
  case "$1" in
    --max-examples) examples=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

version=4.32.5
if ! schemathesis --version 2>/dev/null | grep -q "$version"; then
  echo "installing schemathesis $version" >&2
  python3 -m pip install --quiet "schemathesis==$version"
fi

cargo build --quiet --bin writ
writ=$PWD/target/debug/writ
scratch=$(mktemp -d)
broker=""
cleanup() {
  [ -n "$broker" ] && kill "$broker" 2>/dev/null && wait "$broker" 2>/dev/null
  rm -rf "$scratch"
}
trap cleanup EXIT

cd "$scratch"
WRIT_LOG_FORMAT=json "$writ" serve --dev --listen 127.0.0.1:0 2>serve.log >/dev/null &
broker=$!
url=""
for _ in $(seq 1 100); do
  url=$(python3 - <<'EOF'
import json
for line in open("serve.log"):
    try:
        event = json.loads(line)
    except ValueError:
        continue
    if event.get("fields", {}).get("message") == "writ is listening":
        print("http://" + event["fields"]["addr"])
        break
EOF
)
  [ -n "$url" ] && break
  sleep 0.1
done
[ -n "$url" ] || { cat serve.log >&2; echo "the broker did not start" >&2; exit 1; }

admin=$("$writ" admin bootstrap --principal schemathesis --role admin --role auditor \
  --database-url sqlite://writ-data/writ.db --key-dir writ-data/keys 2>/dev/null)
identity=$("$writ" dev token --subject schemathesis --key-dir writ-data/keys)
cd - >/dev/null

run() {
  schemathesis run openapi.yaml --url "$url" --checks all --max-examples "$examples" \
    --seed "$seed" --no-color --warnings off "$@"
}
echo "schemathesis against $url (seed $seed, $examples examples per operation)"
status=0
run -H "Authorization: Bearer $admin" --exclude-path /v1/writs || status=1
run -H "Authorization: Bearer $identity" --include-path /v1/writs || status=1
exit $status

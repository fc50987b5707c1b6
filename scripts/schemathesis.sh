#!/usr/bin/env bash
# Property-based tests of the running broker against openapi.yaml (schemathesis): requests are
# generated from the document, valid and invalid, and every answer is checked against it
# (status, media type, headers, schema, and that invalid requests are refused and valid ones
# accepted). Runs a dev-mode broker on a free loopback port in a scratch directory, with an
# admin writ (admin, auditor and approver roles) for the admin and approver routes and a dev
# identity token for the agents' routes (POST /v1/writs, POST /v1/approvals and
# GET /v1/approvals/{id}). The dev playground policy has no approval rule, so approval requests
# are refused (approval_not_needed or policy_refused). Exits non-zero on any failure.
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

admin=$("$writ" admin bootstrap --principal schemathesis --role admin --role auditor --role approver \
  --database-url sqlite://writ-data/writ.db --key-dir writ-data/keys 2>/dev/null)
identity=$("$writ" dev token --subject schemathesis --key-dir writ-data/keys)
cd - >/dev/null

# Strings are drawn from Latin-1: the broker refuses text that does not show as what it is
# (unassigned, private-use and invisible code points, text not in NFC), which JSON Schema can
# say exactly within Latin-1 but not for all of Unicode (openapi.yaml says the rest in prose, and
# tests/api/openapi/requests.rs holds the broker to it).
#
# POST /v1/approvals answers a well-formed request for rights that a policy grants without
# approval `400 approval_not_needed` (documented): under the dev playground policy, requests built
# from the document's examples are such requests, so a 400 there is not a refused valid request.
# (tests/api/openapi/requests.rs holds that operation's `invalid_request`s to its schema.)
#
# Free text (a task, a reason, an agent or principal name) is bounded in bytes of UTF-8, which
# JSON Schema cannot say: its `maxLength` counts characters, and a Latin-1 character past U+007F
# takes two bytes, so a string the schema admits can be over the broker's byte limit and be
# refused 400 `invalid_request` as documented. For the operations taking such text a 400 is not
# a refused valid request either (tests/api/openapi/requests.rs holds the byte limits exactly).
cat >"$scratch/schemathesis.toml" <<'EOF'
[[operations]]
include-operation-id = "openApproval"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]

[[operations]]
include-operation-id = ["issueWrit", "revoke", "liftSuspension", "issueAdminWrit", "decideApproval", "explainPolicy"]
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]
EOF
run() {
  schemathesis --config-file "$scratch/schemathesis.toml" run openapi.yaml --url "$url" \
    --checks all --max-examples "$examples" --seed "$seed" --generation-codec latin-1 \
    --no-color --warnings off "$@"
}
echo "schemathesis against $url (seed $seed, $examples examples per operation)"
# The operations agents call, with a workload identity; every other one takes the admin writ.
agent_operations=(issueWrit openApproval readApproval headApproval)
status=0
run -H "Authorization: Bearer $admin" \
  "${agent_operations[@]/#/--exclude-operation-id=}" || status=1
# An agent's read of a pending request may wait (`wait`, up to 30 s) by design: its answers get
# the long-poll's bound instead of the default 10 s.
run -H "Authorization: Bearer $identity" --request-timeout 45 --max-response-time 45 \
  "${agent_operations[@]/#/--include-operation-id=}" || status=1
exit $status

#!/usr/bin/env bash
# Writes small seed corpora for the fuzz targets into fuzz/corpus/<target>/ (git-ignored):
# the run-input examples, genuine-looking callback queries and HTTP API events. libFuzzer
# grows each corpus from there.
set -euo pipefail
cd "$(dirname "$0")"
root=..

mkdir -p corpus/run_input corpus/callback_request corpus/apigw_event

cp "$root"/examples/run-input-api.json corpus/run_input/api.json
cp "$root"/examples/run-input-eventbridge.json corpus/run_input/eventbridge.json
printf '%s' '{"waveId":"wave2-standard","dryRun":true}' > corpus/run_input/configured-wave.json
printf '%s' '{"accountWaves":[{"name":"canary","accounts":["222222222222"],"regions":["eu-west-1"]},{"accounts":["333333333333"]}],"tagFilters":{"PatchGroup":["default","linux"],"Env":"prod"},"wavePauseSeconds":86400,"abortOnIssues":false,"scheduledTime":"2026-11-29T03:00:00Z"}' > corpus/run_input/two-waves.json

id=0123456789abcdef0123456789abcdef
printf 'id=%s&action=approve&exp=1900000000&sig=%s' "$id" "$(printf 'A%.0s' {1..43})" > corpus/callback_request/query
printf 'id=%s&action=reject&exp=1&sig=x&sig=y' "$id" > corpus/callback_request/repeated
# 16 id bytes, an action byte, 8 expiry bytes, then (op, position, byte) edits.
printf '\x01\x23\x45\x67\x89\xab\xcd\xef\x01\x23\x45\x67\x89\xab\xcd\xef\x00\x00\x6c\x3f\x71\x00\x00\x00\x00\x01\x05\x41\x03\x09\x00\x02\x20\x00' \
    > corpus/callback_request/edited-link

event='{"version":"2.0","routeKey":"ANY /callback","rawPath":"/callback","rawQueryString":"id='"$id"'&action=approve&exp=1900000000&sig=abc","headers":{"content-type":"application/x-www-form-urlencoded"},"requestContext":{"http":{"method":"GET","path":"/callback","protocol":"HTTP/1.1","sourceIp":"192.0.2.1","userAgent":"curl"},"timeEpoch":0},"body":"aWQ9MQ==","isBase64Encoded":true}'
{ printf '\x00'; printf '%s' "$event"; } > corpus/apigw_event/get-event
# Structured mode: mode byte, then method selector, query, body, header, path, cookie (0xff-separated).
{ printf '\x0b\x01\xff'; printf 'id=%s&action=reject&exp=5&sig=abc' "$id"; printf '\xffaWQ9MQ==\xfftext/html\xff/callback\xffc=1'; } \
    > corpus/apigw_event/structured-post
echo "seeded: $(find corpus -type f | wc -l) files in fuzz/corpus"

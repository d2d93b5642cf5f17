#!/bin/sh
# Orchestrator bootstrap for one attempt: EC2 user-data rendered by fleets/ec2.py (POSIX sh).
# 1. download the app zip by presigned GET and check its sha256
# 2. unzip it and run run.sh (sh) or main.py (python3) with --key=value args and ORCH_* env
# 3. upload the log every LOG_INTERVAL seconds and at the end, then result.json, to presigned PUT URLs
# 4. power off (the launch template says: terminate on shutdown)
# result.json: {"phase": "app", "exit_code": N, ...} for the app's own exit code, or
#              {"phase": "bootstrap", "exit_code": null, "reason": "bootstrap: ..."} when it never ran.
# Test hooks: ORCH_WORK_DIR (default /var/lib/orch), ORCH_NO_POWEROFF=1.
set -u
umask 022

ARTIFACT_URL=@@ARTIFACT_URL@@
ARTIFACT_SHA256=@@ARTIFACT_SHA256@@
LOG_URL=@@LOG_URL@@
RESULT_URL=@@RESULT_URL@@
LOG_INTERVAL=@@LOG_INTERVAL@@
ORCH_RUN_ID=@@RUN_ID@@
ORCH_DATA_URI=@@DATA_URI@@
ORCH_ARGS=@@ARGS_JSON@@
export ORCH_RUN_ID ORCH_DATA_URI ORCH_ARGS

PATH="${PATH:-/usr/local/bin:/usr/bin:/bin}:/usr/local/sbin:/usr/sbin:/sbin"
HOME="${HOME:-/root}"
export PATH HOME

WORK="${ORCH_WORK_DIR:-/var/lib/orch}"
LOG="$WORK/log"
STOP="$WORK/.stop-log-stream"
RESULT_SENT=""
STOPPING=""
mkdir -p "$WORK" || exit 1
: > "$LOG"

say() { printf '%s orch-bootstrap: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >> "$LOG"; }
have() { command -v "$1" >/dev/null 2>&1; }

http_get() {  # url file
    if have curl; then
        curl -fsS --retry 5 --retry-delay 2 --retry-connrefused --connect-timeout 10 -o "$2" "$1"
    else
        python3 -c 'import shutil, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=60) as r, open(sys.argv[2], "wb") as f:
    shutil.copyfileobj(r, f)' "$1" "$2"
    fi
}

http_put() {  # file url
    if have curl; then
        curl -fsS --retry 5 --retry-delay 2 --retry-connrefused --connect-timeout 10 -T "$1" "$2" >/dev/null
    else
        python3 -c 'import sys, urllib.request
with open(sys.argv[1], "rb") as f:
    data = f.read()
urllib.request.urlopen(urllib.request.Request(sys.argv[2], data=data, method="PUT"), timeout=60).read()' "$1" "$2"
    fi
}

sha256_of() {
    if have sha256sum; then
        sha256sum "$1" | cut -d' ' -f1
    else
        python3 -c 'import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for b in iter(lambda: f.read(1 << 20), b""):
        h.update(b)
print(h.hexdigest())' "$1"
    fi
}

unzip_to() {  # zip dir
    if have unzip; then
        unzip -q -o "$1" -d "$2"
    else
        python3 -m zipfile -e "$1" "$2"
    fi
}

upload_log() { http_put "$LOG" "$LOG_URL" 2>/dev/null || true; }

report() {  # phase exit_code|null reason
    printf '{"phase": "%s", "exit_code": %s, "reason": "%s"}\n' "$1" "$2" "$3" > "$WORK/result.json"
    upload_log
    if http_put "$WORK/result.json" "$RESULT_URL"; then
        RESULT_SENT=1
    else
        RESULT_SENT=failed
        say "could not upload result.json"
    fi
}

finish() {
    rc=$?
    touch "$STOP" 2>/dev/null  # ends the log streamer, if any
    if [ -z "$RESULT_SENT" ] && [ -z "$STOPPING" ]; then
        say "bootstrap script ended unexpectedly (exit $rc)"
        report bootstrap null "bootstrap: script error (exit $rc)"
    fi
    if [ "${ORCH_NO_POWEROFF:-}" != "1" ]; then
        shutdown -h now >/dev/null 2>&1 || poweroff >/dev/null 2>&1
    fi
}
trap finish EXIT
# The instance itself is going away (spot interruption, orchestrator terminate): report nothing, so the
# orchestrator reads the instance's state reason instead of a misleading app exit code.
trap 'STOPPING=1; exit 143' TERM
trap 'STOPPING=1; exit 129' HUP

bootstrap_fail() { say "$1"; report bootstrap null "$1"; exit 1; }

say "run $ORCH_RUN_ID: downloading the artifact"
http_get "$ARTIFACT_URL" "$WORK/app.zip" || bootstrap_fail "bootstrap: artifact download failed"
actual=$(sha256_of "$WORK/app.zip") || bootstrap_fail "bootstrap: cannot compute sha256"
if [ "$actual" != "$ARTIFACT_SHA256" ]; then
    say "expected sha256 $ARTIFACT_SHA256, got $actual"
    bootstrap_fail "bootstrap: checksum mismatch"
fi
rm -rf "$WORK/app"
mkdir -p "$WORK/app"
unzip_to "$WORK/app.zip" "$WORK/app" >> "$LOG" 2>&1 || bootstrap_fail "bootstrap: unzip failed"
cd "$WORK/app" || bootstrap_fail "bootstrap: no app directory"
if [ -f run.sh ]; then
    entry="sh run.sh"
elif [ -f main.py ]; then
    entry="python3 main.py"
else
    bootstrap_fail "bootstrap: no entry point (run.sh or main.py at the zip root)"
fi

rm -f "$STOP"
(
    n=0
    while [ ! -e "$STOP" ]; do
        sleep 1
        n=$((n + 1))
        if [ "$n" -ge "$LOG_INTERVAL" ]; then n=0; upload_log; fi
    done
) &
streamer=$!

say "starting: $entry (sha256 ok)"
set -- @@APP_ARGV@@
$entry "$@" < /dev/null >> "$LOG" 2>&1 &
app=$!
wait "$app"
code=$?
touch "$STOP"
wait "$streamer" 2>/dev/null
[ -n "$STOPPING" ] && exit 143
say "app exited with code $code"
report app "$code" "app exited with code $code"
exit 0

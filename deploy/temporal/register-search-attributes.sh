#!/bin/sh
# Register the orchestrator's custom search attributes in a Temporal namespace (idempotent).
#
#   OrchClientId, OrchJobTemplateId, OrchRunStatus: Keyword    OrchPlannedStart: Datetime
#
# Runs as the one-shot `temporal-search-attributes` service of docker-compose.yml (image temporalio/admin-tools),
# or by hand against any self-hosted cluster:
#   TEMPORAL_ADDRESS=temporal.example:7233 TEMPORAL_NAMESPACE=orch sh deploy/temporal/register-search-attributes.sh
# The `temporal` CLI reads TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TLS*, TEMPORAL_API_KEY from the
# environment. Temporal Cloud: add the attributes in the Cloud UI or with `tcld` instead (docs/production.md).
#
# Waits for the namespace (temporalio/auto-setup creates it shortly after the frontend is healthy), creates
# only the attributes that are missing, then checks all four are listed. Exit 0 = all registered.
set -eu

NS="${TEMPORAL_NAMESPACE:-default}"
WAIT_SEC="${SA_WAIT_SEC:-180}"
SLEEP_SEC="${SA_SLEEP_SEC:-2}"  # whole seconds (POSIX sh arithmetic)
[ "$SLEEP_SEC" -ge 1 ] 2>/dev/null || SLEEP_SEC=1
ATTRS="OrchClientId:Keyword OrchJobTemplateId:Keyword OrchRunStatus:Keyword OrchPlannedStart:Datetime"

log() { echo "register-search-attributes: $*"; }

waited=0
until temporal operator namespace describe --namespace "$NS" >/dev/null 2>&1; do
    if [ "$waited" -ge "$WAIT_SEC" ]; then
        log "namespace '$NS' not reachable at ${TEMPORAL_ADDRESS:-127.0.0.1:7233} after ${WAIT_SEC}s" >&2
        exit 1
    fi
    log "waiting for namespace '$NS' (${waited}s)"
    sleep "$SLEEP_SEC"
    waited=$((waited + SLEEP_SEC))
done

# has NAME TYPE LISTING: the listing has a row "NAME TYPE" (TYPE empty: any type)
has() { printf '%s\n' "$3" | grep -Eq "(^|[[:space:]])$1[[:space:]]+$2"; }

existing="$(temporal operator search-attribute list --namespace "$NS")"
for pair in $ATTRS; do
    name="${pair%%:*}"
    type="${pair#*:}"
    if has "$name" "$type" "$existing"; then
        log "$name ($type) already registered"
    elif has "$name" "" "$existing"; then
        log "$name exists in namespace '$NS' with a type other than $type: fix it by hand" >&2
        exit 1
    else
        log "creating $name ($type) in namespace '$NS'"
        temporal operator search-attribute create --namespace "$NS" --name "$name" --type "$type"
    fi
done

# Confirm (the frontend's search attribute cache can lag a create by a few seconds).
waited=0
while :; do
    listed="$(temporal operator search-attribute list --namespace "$NS")"
    missing=""
    for pair in $ATTRS; do
        name="${pair%%:*}"
        has "$name" "${pair#*:}" "$listed" || missing="$missing $name"
    done
    [ -z "$missing" ] && break
    if [ "$waited" -ge "$WAIT_SEC" ]; then
        log "still missing after ${WAIT_SEC}s:$missing" >&2
        exit 1
    fi
    sleep "$SLEEP_SEC"
    waited=$((waited + SLEEP_SEC))
done
log "all search attributes registered in namespace '$NS'"

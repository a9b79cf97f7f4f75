#!/usr/bin/env bash
# `make rehearse-compose`: docker-compose.yml built and run for real on a Docker engine.
#
#   1. a Docker engine: the one DOCKER_HOST (or the default socket) reaches; else, as root,
#      Debian's docker.io is installed and a private dockerd started (and stopped at the end);
#   2. a base image: PCD_BASE_IMAGE, else the Dockerfile's python image if it can be pulled,
#      else a Debian 12 image made here with debootstrap (kept for the next run);
#   3. every image of docker-compose.yml built (the Ray image as its CPU variant), the stack
#      brought up with two Ray workers (--scale), every healthcheck waited for;
#   4. the pcd-digits study submitted over REST with a token and followed to `succeeded`, the
#      API container restarted and a worker container killed while it runs; its trials, the
#      promoted result, the MLflow parent and child runs (one per trial; trials reported
#      from both workers before the kill) and its artifacts in the S3 service checked;
#   5. `down -v`, and a check that no container, network or volume of the rehearsal is left.
# From the host it talks to the stack only through ports published on 127.0.0.1.
#
# Options (environment), each printed at the start with where its value came from:
#   PCD_BASE_IMAGE   base image for every build (default: see 2.)
#   PCD_BUILD_CA     a CA bundle pip must trust inside the builds (default: pip's cert setting
#                    on this machine, PIP_CERT or a pip config file, if any; "none" for none)
#   PCD_TORCH_WHEEL  a local CPU torch wheel for the builds (default: torch-VERSION+cpu for
#                    the base image's Python in pip's find-links on this machine; "none")
#   PCD_STAND_INS    1: run local stand-ins for the postgres and s3 images (Debian's
#                    PostgreSQL, moto's S3 server); default 1 when the registry is unreachable
#   PCD_REHEARSAL_SPEC (pcd-digits), PCD_REHEARSAL_OVERRIDES (JSON), KEEP_IMAGES=0 to remove
#                    the built images at the end (default: kept, the next run is faster; the
#                    private engine keeps them in /var/lib/pcd-rehearsal-docker, ~25 GB)
# These adapt the rehearsal to this machine; none of them is baked into an image.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${VENV:-$ROOT/.venv}/bin/python
SPEC=${PCD_REHEARSAL_SPEC:-pcd-digits}
OVERRIDES=${PCD_REHEARSAL_OVERRIDES:-'{"budget.trials": 8, "concurrency": 4}'}
WORK=$(mktemp -d /tmp/pcd-rc.XXXXXX)
PROJECT="pcdrehearsal$(basename "$WORK" | tr -dc 'a-z0-9' | tr 'A-Z' 'a-z' | cut -c1-8)"
PYTHON_IMAGE=$(sed -n 's/^ARG PYTHON_IMAGE=//p' "$ROOT/deploy/Dockerfile")
TORCH_VERSION=$(sed -n 's/^ARG TORCH_VERSION=//p' "$ROOT/deploy/Dockerfile")
LOCAL_BASE=pcd-rehearsal/debian-python:bookworm
T0=$SECONDS
TIMELINE=()
ADDED_EXTRAS=()
STARTED_DOCKERD=""

say() { printf '[rehearse-compose] %s\n' "$*"; }
mark() { TIMELINE+=("$(printf '%5ds  %s' $((SECONDS - T0)) "$*")"); say "== $* (at $((SECONDS - T0)) s)"; }
fail() { say "FAILED: $*"; exit 1; }
free_port() { "$PY" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }
secret() { "$PY" -c "import secrets; print(secrets.token_hex(16))"; }
dc() { docker-compose -p "$PROJECT" --env-file "$WORK/.env" -f "$WORK/compose.yml" "$@"; }

# ------------------------------------------------------------------------- engine
ensure_engine() {
    if ! command -v docker >/dev/null || ! command -v docker-compose >/dev/null; then
        [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null \
            || fail "need docker and docker-compose (or root with apt-get to install Debian's)"
        say "installing Debian's docker.io and docker-compose"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            docker.io docker-compose >/dev/null
    fi
    if docker info >/dev/null 2>&1; then
        say "Docker engine: the running one ($(docker info -f '{{.ServerVersion}}'))"
        return
    fi
    [[ $(id -u) == 0 ]] || fail "no Docker engine answers and this is not root to start one"
    local sock=/run/pcd-rehearsal-docker.sock
    say "starting a private dockerd (data in /var/lib/pcd-rehearsal-docker, socket $sock)"
    dockerd --data-root /var/lib/pcd-rehearsal-docker --host "unix://$sock" \
        --pidfile /run/pcd-rehearsal-docker.pid >"$WORK/dockerd.log" 2>&1 &
    STARTED_DOCKERD=$!
    export DOCKER_HOST="unix://$sock"
    for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && return; sleep 1; done
    tail -20 "$WORK/dockerd.log"
    fail "dockerd did not start"
}

# ------------------------------------------------------------------------- base image
debootstrap_base() {
    if docker image inspect "$LOCAL_BASE" >/dev/null 2>&1; then
        say "base image: $LOCAL_BASE (made by an earlier run with debootstrap)"
        return
    fi
    [[ $(id -u) == 0 ]] || fail "building a base image with debootstrap needs root"
    command -v debootstrap >/dev/null || {
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    }
    say "base image: making $LOCAL_BASE with debootstrap (Debian 12, Python 3.11)"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$WORK/rootfs" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap.log"; fail "debootstrap"; }
    tar -C "$WORK/rootfs" -c . | docker import - "$LOCAL_BASE" >/dev/null
    rm -rf "$WORK/rootfs"
}

choose_base() {
    STAND_INS=${PCD_STAND_INS:-}
    if [[ -n ${PCD_BASE_IMAGE:-} ]]; then
        BASE=$PCD_BASE_IMAGE
        say "base image: $BASE (PCD_BASE_IMAGE)"
    elif timeout 60 docker pull -q "$PYTHON_IMAGE" >/dev/null 2>&1; then
        BASE=$PYTHON_IMAGE
        say "base image: $BASE (pulled)"
    else
        say "base image: $PYTHON_IMAGE cannot be pulled (no registry reachable)"
        debootstrap_base
        BASE=$LOCAL_BASE
        STAND_INS=${STAND_INS:-1}
    fi
    STAND_INS=${STAND_INS:-0}
}

# ------------------------------------------------------------------------- build extras
add_extra() { # SRC DEST-relative-to-build-extra
    local dest="$ROOT/deploy/build-extra/$2"
    [[ -e $dest ]] && { say "build extra $2: already there, kept"; return; }
    mkdir -p "$(dirname "$dest")"
    ln "$1" "$dest" 2>/dev/null || cp "$1" "$dest"
    ADDED_EXTRAS+=("$dest")
}

build_extras() {
    local ca=${PCD_BUILD_CA:-} wheel=${PCD_TORCH_WHEEL:-} how_ca="PCD_BUILD_CA" how_wheel="PCD_TORCH_WHEEL"
    if [[ -z $ca ]]; then # pip's own setting: PIP_CERT, else a `cert` in a pip config file
        ca=${PIP_CERT:-$("$PY" -m pip config list 2>/dev/null | sed -n "s/^[a-z:]*\.cert='\(.*\)'$/\1/p" | head -1)}
        how_ca="pip's cert setting on this machine"
    fi
    if [[ -n $ca && $ca != none ]]; then
        [[ -f $ca ]] || fail "PCD_BUILD_CA: no file $ca"
        add_extra "$ca" ca.crt
        say "build extra: CA bundle $ca ($how_ca)"
    fi
    if [[ -z $wheel ]]; then
        local pyver links dir
        pyver=$(docker run --rm "$BASE" python3 -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
        links="${PIP_FIND_LINKS:-} $("$PY" -m pip config get global.find-links 2>/dev/null || true)"
        for dir in $links; do
            for w in "$dir"/torch-"$TORCH_VERSION"+cpu-"$pyver"-*linux*_x86_64.whl; do
                [[ -f $w ]] && wheel=$w
            done
        done
        how_wheel="pip's find-links on this machine, for $pyver"
    fi
    if [[ -n $wheel && $wheel != none ]]; then
        [[ -f $wheel ]] || fail "PCD_TORCH_WHEEL: no file $wheel"
        add_extra "$wheel" "wheels/$(basename "$wheel")"
        say "build extra: torch wheel $(basename "$wheel") ($how_wheel)"
    fi
}

# ------------------------------------------------------------------------- stack
write_env() {
    API_PORT=$(free_port) MLFLOW_PORT=$(free_port) RAY_PORT=$(free_port)
    local pg s3key ray api
    pg=$(secret) s3key=$(secret) ray=$(secret)
    API_TOKEN=$(secret)
    sed -e "s/^POSTGRES_PASSWORD=.*/POSTGRES_PASSWORD=$pg/" \
        -e "s/^S3_ACCESS_KEY=.*/S3_ACCESS_KEY=pcd-rehearsal/" \
        -e "s/^S3_SECRET_KEY=.*/S3_SECRET_KEY=$s3key/" \
        -e "s/^RAY_AUTH_TOKEN=.*/RAY_AUTH_TOKEN=$ray/" \
        -e "s/^PCD_API_TOKENS=.*/PCD_API_TOKENS=$API_TOKEN:rw/" \
        -e "s/^PUBLISH_ADDRESS=.*/PUBLISH_ADDRESS=127.0.0.1/" \
        -e "s/^UI_PUBLISH_ADDRESS=.*/UI_PUBLISH_ADDRESS=127.0.0.1/" \
        -e "s/^API_PORT=.*/API_PORT=$API_PORT/" \
        -e "s/^MLFLOW_PORT=.*/MLFLOW_PORT=$MLFLOW_PORT/" \
        -e "s/^RAY_DASHBOARD_PORT=.*/RAY_DASHBOARD_PORT=$RAY_PORT/" \
        -e "s/^RAY_GCS_PORT=.*/RAY_GCS_PORT=$(free_port)/" \
        -e "s/^S3_PORT=.*/S3_PORT=$(free_port)/" \
        -e "s/^OPTUNA_DASHBOARD_PORT=.*/OPTUNA_DASHBOARD_PORT=$(free_port)/" \
        -e "s/^MLFLOW_WORKERS=.*/MLFLOW_WORKERS=1/" \
        -e "s/^RAY_SHM_SIZE=.*/RAY_SHM_SIZE=1gb/" \
        -e "s/^PCD_IMAGE=.*/PCD_IMAGE=pcd-rehearsal/" \
        "$ROOT/.env.example" >"$WORK/.env"
    say "published on 127.0.0.1: API :$API_PORT, MLflow :$MLFLOW_PORT, Ray dashboard :$RAY_PORT"
}

compose_file() {
    docker-compose -p "$PROJECT" --env-file "$WORK/.env" -f "$ROOT/docker-compose.yml" config \
        >"$WORK/config.yml"
    local stand_ins=()
    [[ $STAND_INS == 1 ]] && stand_ins=(--stand-ins)
    "$PY" "$ROOT/deploy/rehearsal/compose_for_rehearsal.py" "$WORK/config.yml" "$WORK/compose.yml" \
        --base-image "$BASE" --deploy-dir "$ROOT/deploy" "${stand_ins[@]}"
}

wait_healthy() { # SECONDS: every running service healthy, s3-init exited 0
    local deadline=$((SECONDS + $1)) id state bad
    while :; do
        bad=""
        for id in $(dc ps -q); do
            state=$(docker inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}-{{end}} {{.State.ExitCode}}' "$id")
            case $state in
                *" running healthy "*) ;;
                *s3-init*" exited "*" 0") ;; # the one-shot bucket creation, done
                *) bad="$bad ${state%% *}(${state#* })" ;;
            esac
        done
        [[ -z $bad ]] && return 0
        ((SECONDS < deadline)) || { say "not healthy:$bad"; return 1; }
        sleep 3
    done
}

wait_service_healthy() { # SERVICE SECONDS
    local deadline=$((SECONDS + $2))
    until [[ $(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$(dc ps -q "$1")") == healthy ]]; do
        ((SECONDS < deadline)) || return 1
        sleep 2
    done
}

show_logs() {
    say "last log lines of every service:"
    dc logs --no-color --tail 40 2>&1 | tail -n 300 || true
}

check_s3() { # PARENT_RUN_ID: the study's MLflow artifacts are objects in the S3 bucket
    dc exec -T -e "S3_BUCKET=$(sed -n 's/^S3_BUCKET=//p' "$WORK/.env")" mlflow python - "$1" <<'EOF'
import os, sys
import boto3
s3 = boto3.client("s3", endpoint_url=os.environ["MLFLOW_S3_ENDPOINT_URL"])
bucket = os.environ["S3_BUCKET"]
keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="mlflow/")
        for o in page.get("Contents", [])]
mine = [k for k in keys if f"/{sys.argv[1]}/artifacts/" in k]
print(f"[rehearse-compose] S3 bucket {bucket!r}: {len(keys)} objects under mlflow/; the study's parent run:")
for k in sorted(mine):
    print(f"[rehearse-compose]   s3://{bucket}/{k}")
sys.exit(0 if any(k.endswith("/spec.json") for k in mine) else "no spec.json of the study in S3")
EOF
}

# ------------------------------------------------------------------------- teardown
leftovers() {
    local kind
    for kind in container network volume; do
        case $kind in
            container) docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" ;;
            *) docker "$kind" ls -q --filter "label=com.docker.compose.project=$PROJECT" ;;
        esac
    done
}

cleanup() {
    local status=$?
    set +e
    if [[ -f $WORK/compose.yml ]] && docker info >/dev/null 2>&1; then
        ((status == 0)) || show_logs
        mark "down -v"
        dc down -v --remove-orphans >"$WORK/down.log" 2>&1 || cat "$WORK/down.log"
        local left
        left=$(leftovers)
        if [[ -n $left ]]; then
            say "LEFT BEHIND: $left"
            status=1
        else
            say "nothing left: no container, network or volume of $PROJECT"
        fi
        if [[ ${KEEP_IMAGES:-1} == 0 ]]; then
            docker image ls -q 'pcd-rehearsal*' | xargs -r docker image rm -f >/dev/null
        fi
    fi
    rm -f "${ADDED_EXTRAS[@]}" 2>/dev/null
    rmdir "$ROOT/deploy/build-extra/wheels" 2>/dev/null
    if [[ -n $STARTED_DOCKERD ]]; then
        say "stopping the dockerd this rehearsal started"
        kill "$STARTED_DOCKERD" 2>/dev/null
        wait "$STARTED_DOCKERD" 2>/dev/null
    fi
    say "timeline:"
    printf '  %s\n' "${TIMELINE[@]}"
    ((status == 0)) && say "PASSED" || say "FAILED (status $status)"
    rm -rf "$WORK"
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------------- the run
mark "start (work folder $WORK, project $PROJECT)"
ensure_engine
choose_base
build_extras
write_env
compose_file
API="http://127.0.0.1:$API_PORT"
MLFLOW="http://127.0.0.1:$MLFLOW_PORT"

mark "build"
dc build >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; fail "build"; }
mark "built"
# Our own engine: untagged images older than a day go (the builder stages are untagged and are
# the build cache, so today's stay; a day of Dockerfile changes once left 60 GB).
if [[ -n $STARTED_DOCKERD ]]; then
    docker image prune -f --filter "until=24h" | tail -1
fi
say "image sizes:"
docker image ls --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E 'pcd-rehearsal|seaweedfs|postgres' | sort

mark "up -d --scale ray-worker=2"
dc up -d --scale ray-worker=2 >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; fail "up"; }
wait_healthy 600 || fail "services not healthy"
mark "every service healthy"
dc ps

mark "submit $SPEC"
STUDY=$("$PY" "$ROOT/deploy/rehearsal/checks.py" submit "$API" "$API_TOKEN" "$SPEC" "$OVERRIDES")
say "study $STUDY"
"$PY" "$ROOT/deploy/rehearsal/checks.py" wait "$API" "$API_TOKEN" "$STUDY" running 600
mark "first trial running"
# both workers ran trials (checked before the kill: after it, every trial can end on the
# surviving worker, whose node its MLflow run then names)
"$PY" "$ROOT/deploy/rehearsal/checks.py" nodes "$API" "$API_TOKEN" "$STUDY" "$MLFLOW" 2 120
mark "trials on both workers"

# both faults while the first trials run (a digits trial takes seconds)
VICTIM=$(dc ps -q ray-worker | tail -1)
mark "kill -9 worker container $(docker inspect -f '{{.Name}}' "$VICTIM") mid-study"
docker kill -s KILL "$VICTIM" >/dev/null
mark "restart the api container mid-study"
dc restart api >/dev/null
wait_service_healthy api 180 || fail "the api is not healthy after its restart"
mark "api healthy again"
say "killed worker now: $(docker inspect -f '{{.State.Status}} (restarts: {{.RestartCount}})' "$VICTIM")"

"$PY" "$ROOT/deploy/rehearsal/checks.py" wait "$API" "$API_TOKEN" "$STUDY" done 1800
mark "study succeeded"
VERIFY=$("$PY" "$ROOT/deploy/rehearsal/checks.py" verify "$API" "$API_TOKEN" "$STUDY" "$MLFLOW" \
    "$("$PY" -c "import json,sys; print(json.loads(sys.argv[1]).get('budget.trials', 6))" "$OVERRIDES")")
printf '%s\n' "$VERIFY" | grep '^\[rehearse' || true
SUMMARY=$(printf '%s\n' "$VERIFY" | grep '^{')
PARENT=$("$PY" -c "import json,sys; print(json.loads(sys.argv[1])['parent_run_id'])" "$SUMMARY")
check_s3 "$PARENT" || fail "the study's artifacts are not in the S3 service"
mark "checks passed"

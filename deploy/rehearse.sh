#!/usr/bin/env bash
# Rehearse the docker-compose topology without Docker, as processes on this machine:
#   Postgres  a fresh database on the server at 127.0.0.1:5432 (study store, Optuna, MLflow)
#   MLflow    a tracking server on that database, artifacts proxied to a local folder
#   Ray       a head (127.0.0.2, no CPUs for trials, Jobs API) and one worker (127.0.0.3),
#             token authentication on both
#   API       `pcd serve` in cluster mode: every study driver is a Ray Job on the head
# then submits a study over REST (default: pcd-digits), follows it to the end, checks that it
# succeeded with a best trial and its MLflow run, and stops everything it started by PID.
#
# Usage: deploy/rehearse.sh [SPEC]      (env: VENV, REHEARSAL_DIR, REHEARSAL_PG, KEEP=1)
# Exit status 0 only when the study succeeded.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${VENV:-$ROOT/.venv}/bin
SPEC=${1:-pcd-digits}
PG=${REHEARSAL_PG:-postgresql+psycopg://postgres@127.0.0.1:5432}
# short: Ray's socket paths must stay under ~100 characters
WORK=${REHEARSAL_DIR:-$(mktemp -d /tmp/pcd-rh.XXXXXX)}
mkdir -p "$WORK/shared/studies" "$WORK/shared/data" "$WORK/shared/teachers" "$WORK/logs"
export PATH="$BIN:$PATH" # the Ray Job's `python` is this environment's, as in the image
export RAY_USAGE_STATS_ENABLED=0

say() { printf '[rehearse] %s\n' "$*"; }
free_port() { "$BIN/python" -c "import socket; s=socket.socket(); s.bind(('$1', 0)); print(s.getsockname()[1])"; }
token() { "$BIN/python" -c "import secrets; print(secrets.token_hex(24))"; }
wait_http() { # URL SECONDS
    local deadline=$((SECONDS + $2))
    until "$BIN/python" -c "import httpx,sys; sys.exit(httpx.get('$1', timeout=2).status_code != 200)" 2>/dev/null; do
        ((SECONDS < deadline)) || { say "timed out waiting for $1"; return 1; }
        sleep 0.5
    done
}

databases() { # create|drop: the study store's database, Optuna's and MLflow's
    "$BIN/python" - "$PG" "$DB" "$1" <<'EOF'
import sys
from sqlalchemy import create_engine, text
url, db, action = sys.argv[1:]
engine = create_engine(f"{url}/postgres", isolation_level="AUTOCOMMIT")
with engine.connect() as conn:
    for name in (db, f"{db}_optuna", f"{db}_mlflow"):
        sql = f'create database "{name}"' if action == "create" else (
            f'drop database if exists "{name}" with (force)')
        conn.execute(text(sql))
EOF
}

descendants() { # PID: every process below it
    local child
    for child in $(pgrep -P "$1"); do
        echo "$child"
        descendants "$child"
    done
}

PIDS=()
DB="pcd_rehearsal_$(token | cut -c1-8)" # the study store; Optuna and MLflow get their own
cleanup() {
    local status=$?
    set +e
    say "stopping what was started"
    # everything Ray started lives under $WORK (its temp folders): find those by PID too
    local ours pid
    ours=$(pgrep -f "$WORK" | grep -v "^$$\$")
    # Ray's agents rename themselves (ray::DashboardAgent): take them as descendants
    for pid in $ours "${PIDS[@]}"; do ours="$ours $(descendants "$pid")"; done
    for pid in "${PIDS[@]}" $ours; do kill -TERM "$pid" 2>/dev/null; done
    for _ in $(seq 1 50); do
        local left=0
        for pid in "${PIDS[@]}" $ours; do kill -0 "$pid" 2>/dev/null && left=1; done
        ((left)) || break
        sleep 0.2
    done
    for pid in "${PIDS[@]}" $ours $(pgrep -f "$WORK" | grep -v "^$$\$"); do kill -KILL "$pid" 2>/dev/null; done
    databases drop
    [[ ${KEEP:-0} == 1 ]] || rm -rf "$WORK"
    exit $status
}
trap cleanup EXIT INT TERM

say "work folder $WORK; database $DB"
databases create
DB_URL="$PG/$DB"

export RAY_AUTH_MODE=token RAY_AUTH_TOKEN
RAY_AUTH_TOKEN=$(token)
API_TOKEN=$(token)

MLFLOW_PORT=$(free_port 127.0.0.1)
say "MLflow server on 127.0.0.1:$MLFLOW_PORT (Postgres backend, proxied artifacts)"
MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false "$BIN/mlflow" server \
    --backend-store-uri "$PG/${DB}_mlflow" --serve-artifacts --artifacts-destination "$WORK/artifacts" \
    --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1 >"$WORK/logs/mlflow.log" 2>&1 &
PIDS+=($!)

RAY_PORT=$(free_port 127.0.0.2)
JOBS_PORT=$(free_port 127.0.0.2)
say "Ray head on 127.0.0.2:$RAY_PORT (Jobs API :$JOBS_PORT), worker on 127.0.0.3"
"$BIN/ray" start --head --node-ip-address=127.0.0.2 --port="$RAY_PORT" --num-cpus=0 \
    --dashboard-host=127.0.0.2 --dashboard-port="$JOBS_PORT" --temp-dir="$WORK/rh" \
    --disable-usage-stats >"$WORK/logs/ray-head.log" 2>&1
"$BIN/ray" start --address="127.0.0.2:$RAY_PORT" --node-ip-address=127.0.0.3 \
    --num-cpus="${REHEARSAL_WORKER_CPUS:-2}" --temp-dir="$WORK/rw" \
    --disable-usage-stats >"$WORK/logs/ray-worker.log" 2>&1

wait_http "http://127.0.0.1:$MLFLOW_PORT/health" 120 || { tail -20 "$WORK/logs/mlflow.log"; exit 1; }

API_PORT=$(free_port 127.0.0.1)
say "API on 127.0.0.1:$API_PORT (cluster mode)"
env PCD_DATABASE_URL="$DB_URL" PCD_OPTUNA_STORAGE="$PG/${DB}_optuna" \
    PCD_MLFLOW_TRACKING_URI="http://127.0.0.1:$MLFLOW_PORT" \
    PCD_RAY_ADDRESS="http://127.0.0.2:$JOBS_PORT" \
    PCD_STUDIES_DIR="$WORK/shared/studies" PCD_DATA_ROOT="$WORK/shared/data" \
    PCD_TEACHER_ROOT="$WORK/shared/teachers" PCD_API_TOKENS="$API_TOKEN:rw" \
    "$BIN/pcd" serve --host 127.0.0.1 --port "$API_PORT" --log-level warning \
    >"$WORK/logs/api.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$API_PORT/healthz" 60 || { tail -20 "$WORK/logs/api.log"; exit 1; }

export PCD_API_URL="http://127.0.0.1:$API_PORT" PCD_API_TOKEN="$API_TOKEN"
"$BIN/python" - <<'EOF'
import os, sys
import httpx
r = httpx.get(f"{os.environ['PCD_API_URL']}/readyz",
              headers={"Authorization": f"Bearer {os.environ['PCD_API_TOKEN']}"}, timeout=10)
print("[rehearse] readyz:", r.status_code, r.text)
sys.exit(r.status_code != 200)
EOF

say "submitting $SPEC over REST and following it"
OUTPUT=$("$BIN/pcd" study submit "$SPEC" --watch 2>&1 | tee /dev/stderr) || {
    say "the study did not succeed; logs:"
    tail -n 30 "$WORK"/logs/api.log "$WORK"/shared/studies/*/driver.log "$WORK"/rh/session_latest/logs/job-driver-*.log 2>&1
    exit 1
}
STUDY_ID=$(printf '%s\n' "$OUTPUT" | sed -n 's/^submitted \([0-9a-f]*\) .*/\1/p' | head -1)

"$BIN/python" - "$STUDY_ID" "$RAY_AUTH_TOKEN" "$JOBS_PORT" <<'EOF'
import os, sys
import httpx
study_id, _, jobs_port = sys.argv[1:]
api = httpx.Client(base_url=os.environ["PCD_API_URL"], timeout=10,
                   headers={"Authorization": f"Bearer {os.environ['PCD_API_TOKEN']}"})
study = api.get(f"/v1/studies/{study_id}").json()
assert study["status"] == "succeeded", study
assert study["best"] and study["best"]["value"] is not None, study
assert study["links"]["mlflow"], study
import time
from ray.job_submission import JobSubmissionClient
client = JobSubmissionClient(f"http://127.0.0.2:{jobs_port}")
deadline = time.monotonic() + 60  # the driver exits just after writing its outcome
while True:
    jobs = [j for j in client.list_jobs() if (j.metadata or {}).get("pcd_study") == study_id]
    if (jobs and all(j.status == "SUCCEEDED" for j in jobs)) or time.monotonic() > deadline:
        break
    time.sleep(1)
assert jobs and all(j.status == "SUCCEEDED" for j in jobs), jobs
print(f"[rehearse] OK: {study_id} succeeded as Ray Job {jobs[-1].submission_id}; "
      f"best {study['best']['value']:.4f}; MLflow {study['links']['mlflow']}")
EOF

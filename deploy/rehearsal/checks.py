"""The checks of `make rehearse-compose`, over the ports the stack publishes on 127.0.0.1.

  submit  API TOKEN SPEC OVERRIDES_JSON      -> prints the study id
  wait    API TOKEN STUDY running|done SECS  -> waits for a running trial / a final status
  nodes   API TOKEN STUDY MLFLOW N SECS      -> waits until trials have reported from N Ray
                                                nodes (their runs' pcd.node_ip); prints them
  verify  API TOKEN STUDY MLFLOW N_TRIALS    -> the study, its trials and its MLflow runs;
                                                prints a JSON summary (parent run, nodes)
Each prints what it saw; a failed check exits non-zero with one line saying which.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from typing import Any

import httpx

from service.study_files import Tags, child_runs_filter  # the project's venv runs this

FINAL = {"succeeded", "failed", "cancelled"}


def fail(message: str) -> None:
    sys.exit(f"[rehearse-compose] CHECK FAILED: {message}")


def api_client(api: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=api, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def submit(api: str, token: str, spec: str, overrides: str) -> None:
    with api_client(api, token) as c:
        r = c.post("/v1/studies", json={"search_space": spec, "overrides": json.loads(overrides)})
    if r.status_code != 201:  # created, queued
        fail(f"submit answered {r.status_code}: {r.text[:500]}")
    print(r.json()["id"])


def study(c: httpx.Client, study_id: str) -> dict[str, Any]:
    r = c.get(f"/v1/studies/{study_id}")
    r.raise_for_status()
    return r.json()


def wait(api: str, token: str, study_id: str, what: str, seconds: str) -> None:
    deadline = time.monotonic() + float(seconds)
    last = None
    with api_client(api, token) as c:
        while time.monotonic() < deadline:
            try:
                s = study(c, study_id)
            except httpx.HTTPError as e:  # the API restarting: keep asking
                s = {"status": f"unreachable ({type(e).__name__})", "trials": {}}
            seen = (s["status"], json.dumps(s.get("trials", {}), sort_keys=True))
            if seen != last:
                print(f"[rehearse-compose]   {s['status']}: trials {s.get('trials')}", flush=True)
                last = seen
            if what == "running" and (s.get("trials") or {}).get("running", 0) > 0:
                return
            if what == "running" and s["status"] in FINAL:
                fail(f"study {study_id} ended {s['status']} before a trial was seen running")
            if what == "done" and s["status"] in FINAL:
                if s["status"] != "succeeded":
                    fail(f"study {study_id} ended {s['status']}: {s.get('error')}")
                return
            time.sleep(1)
    fail(f"study {study_id}: no {what!r} within {seconds} s (last: {last})")


def mlflow_children(mlflow: str, parent: dict[str, Any]) -> list[dict[str, Any]]:
    body = {
        "experiment_ids": [parent["info"]["experiment_id"]],
        "filter": child_runs_filter(parent["info"]["run_id"]),
        "max_results": 1000,
    }
    r = httpx.post(f"{mlflow}/api/2.0/mlflow/runs/search", json=body, timeout=30)
    r.raise_for_status()
    return r.json().get("runs", [])


def tags(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def _nodes_reported(c: httpx.Client, study_id: str, mlflow: str) -> tuple[set[str], str]:
    """The Ray nodes the study's trials have reported from so far, and its status."""
    s = study(c, study_id)
    link = (s.get("links") or {}).get("mlflow")
    if not link:
        return set(), s["status"]
    r = httpx.get(
        f"{mlflow}/api/2.0/mlflow/runs/get", params={"run_id": run_id_of_link(link)}, timeout=30
    )
    if r.status_code != 200:
        return set(), s["status"]
    found = {tags(ch).get(Tags.NODE_IP) for ch in mlflow_children(mlflow, r.json()["run"])}
    return {n for n in found if n}, s["status"]


def nodes(api: str, token: str, study_id: str, mlflow: str, want: str, seconds: str) -> None:
    """Wait until trials have reported from ``want`` nodes (the worker kill comes after: a
    trial that ends on the surviving worker carries only that node's tag)."""
    deadline, seen = time.monotonic() + float(seconds), set()
    with api_client(api, token) as c:
        while time.monotonic() < deadline:
            seen, status = _nodes_reported(c, study_id, mlflow)
            if len(seen) >= int(want) or status in FINAL:
                break
            time.sleep(0.5)
    print(f"[rehearse-compose] trials reported from {len(seen)} node(s): {sorted(seen)}")
    if len(seen) < int(want):
        fail(f"trials reported from {len(seen)} node(s) within {seconds} s, expected {want}")


def run_id_of_link(link: str) -> str:
    """The run id of an MLflow UI run link: .../#/experiments/E/runs/ID?workflowType=..."""
    return link.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]


def verify(api: str, token: str, study_id: str, mlflow: str, n_trials: str) -> None:
    with api_client(api, token) as c:
        s = study(c, study_id)
        trials = c.get(f"/v1/studies/{study_id}/trials", params={"limit": 500}).json()["items"]
    if s["status"] != "succeeded" or not s.get("best") or s["best"].get("value") is None:
        fail(f"study not succeeded with a best trial: {s}")
    print(f"[rehearse-compose] study {study_id}: {s['status']}, trials {s['trials']}")
    print(f"[rehearse-compose] best trial {s['best']['trial_id']}: {s['best']['value']:.4f}")
    print(f"[rehearse-compose] promoted result: {json.dumps(s.get('promotion'))[:400]}")
    if len(trials) != int(n_trials):
        fail(f"{len(trials)} trials listed, expected {n_trials}")
    for t in trials:
        print(f"[rehearse-compose]   trial {t['trial_id']} {t['outcome']} epochs={t['epochs']}")

    parent_id = run_id_of_link(s["links"]["mlflow"])
    r = httpx.get(f"{mlflow}/api/2.0/mlflow/runs/get", params={"run_id": parent_id}, timeout=30)
    if r.status_code != 200:
        fail(f"MLflow has no parent run {parent_id}: {r.status_code} {r.text[:300]}")
    parent = r.json()["run"]
    children = mlflow_children(mlflow, parent)
    per_trial = Counter(tags(ch).get(Tags.TRIAL_ID) for ch in children)
    nodes = Counter(tags(ch).get(Tags.NODE_IP) for ch in children)
    print(
        f"[rehearse-compose] MLflow parent run {parent_id} ({parent['info']['status']}), "
        f"{len(children)} child runs, artifacts at {parent['info']['artifact_uri']}"
    )
    print(f"[rehearse-compose] trials per node: {dict(nodes)}")
    if set(per_trial) != {t["trial_id"] for t in trials}:
        fail(f"MLflow child runs {sorted(per_trial)} != API trials")
    if any(n != 1 for n in per_trial.values()):
        fail(f"a trial has more than one MLflow run: {per_trial}")
    json.dump(
        {
            "parent_run_id": parent_id,
            "experiment_id": parent["info"]["experiment_id"],
            "nodes": dict(nodes),
            "trials": len(trials),
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    commands = {"submit": submit, "wait": wait, "nodes": nodes, "verify": verify}
    commands[sys.argv[1]](*sys.argv[2:])

"""The KubeRay manifests (deploy/kuberay): what they promise, read from the YAML itself."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERAY = ROOT / "deploy" / "kuberay"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"


def parse_env_file(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
        out[key.strip()] = value.strip()
    return out


def kuberay_docs() -> dict[str, list[dict[str, Any]]]:
    return {
        p.name: [d for d in yaml.safe_load_all(p.read_text()) if d is not None]
        for p in sorted(KUBERAY.glob("*.yaml"))
    }


def test_kuberay_manifests() -> None:
    docs = kuberay_docs()
    kustomization = docs.pop("kustomization.yaml")[0]
    assert set(kustomization["resources"]) == set(docs), "kustomization lists other files"
    by_kind = {d["kind"]: d for ds in docs.values() for d in ds}
    cluster = by_kind["RayCluster"]
    assert cluster["apiVersion"] == "ray.io/v1"
    spec = cluster["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["rayVersion"] == "2.60.0"
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-gpus"] == "0"
    (group,) = spec["workerGroupSpecs"]
    assert 0 <= group["minReplicas"] <= group["maxReplicas"] and group["maxReplicas"] >= 1
    (worker,) = group["template"]["spec"]["containers"]
    assert int(worker["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    (head_c,) = head["template"]["spec"]["containers"]
    assert head_c["image"] == worker["image"]
    version = parse_env_file(ENV_EXAMPLE)["PCD_VERSION"]
    assert head_c["image"].endswith(f"pcd:{version}")

    def secret_refs(container: dict[str, Any]) -> set[str]:
        return {e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e}

    api = by_kind["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    for c in (head_c, worker, api):
        assert "pcd-secrets" in secret_refs(c)
        assert {"mountPath": "/srv/pcd", "name": "shared"} in c["volumeMounts"]
    autoscaler_env = {e["name"]: e for e in spec["autoscalerOptions"]["env"]}
    assert autoscaler_env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "pcd-secrets"
    assert by_kind["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert by_kind["Service"]["spec"]["ports"][0]["port"] == 8000
    secret_gen = kustomization["secretGenerator"][0]
    assert secret_gen["name"] == "pcd-secrets"
    example = parse_env_file(KUBERAY / "secrets.env.example")
    assert "RAY_AUTH_TOKEN" in example and all(v == "" for v in example.values())
    literals = dict(x.split("=", 1) for x in kustomization["configMapGenerator"][0]["literals"])
    assert literals["PCD_RAY_ADDRESS"] == "http://pcd-head-svc:8265"
    assert literals["RAY_AUTH_MODE"] == "token"
    # KubeRay's default readiness/liveness probes run wget inside the Ray containers.
    assert re.search(r"apt-get install [^\n]*\bwget\b", DOCKERFILE.read_text())

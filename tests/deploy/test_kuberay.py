"""The KubeRay deployment (deploy/kuberay), validated offline: no Kubernetes cluster is used.

The kustomization is rendered by a small renderer here (the features kustomization.yaml uses:
resources, namespace, configMap/secret generators without name hashes, images), which is
compared with `kubectl kustomize` where kubectl is installed. Every rendered document is then
validated: the built-in kinds against the Kubernetes schemas of the package
kubernetes-validate (strict: unknown fields are errors), the RayCluster against the CRD schema
of the oldest KubeRay we support (tests/deploy/schemas, NOTICE there), with unknown fields
rejected as `kubectl apply` does by default. The MLflow chart values are validated against
the chart's values schema. Invariants are read from the YAML itself.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from pcd_testing.envfile import parse_env_file

ROOT = Path(__file__).resolve().parents[2]
KUBERAY = ROOT / "deploy" / "kuberay"
MLFLOW_VALUES = KUBERAY / "helm" / "mlflow-values.yaml"
GUIDE = KUBERAY / "README.md"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
KUBERAY_MIN = "v1.0.0"  # the oldest KubeRay operator the manifests are validated against
RAYCLUSTER_SCHEMA = SCHEMAS / f"kuberay-{KUBERAY_MIN}-raycluster-v1.json"
MLFLOW_CHART = "1.11.5"
MLFLOW_CHART_SCHEMA = SCHEMAS / f"mlflow-chart-{MLFLOW_CHART}-values.schema.json"
MLFLOW_CHART_DEFAULTS = SCHEMAS / f"mlflow-chart-{MLFLOW_CHART}-values.defaults.json"

# What the renderer below implements; anything else in kustomization.yaml is an error.
KUSTOMIZE_KEYS = {
    "apiVersion",
    "kind",
    "namespace",
    "resources",
    "images",
    "generatorOptions",
    "configMapGenerator",
    "secretGenerator",
}
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


# ----------------------------------------------------------------------------- helpers


def project_version() -> str:
    match = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert match, "pyproject.toml has no version"
    return match.group(1)


def load_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def kuberay_docs() -> dict[str, list[dict[str, Any]]]:
    return {p.name: load_docs(p) for p in sorted(KUBERAY.glob("*.yaml"))}


def split_image(image: str) -> tuple[str, str | None]:
    """name, tag (None if untagged); a registry port (host:5000/x) is part of the name."""
    name, _, digest = image.partition("@")
    assert not digest, f"digests are not handled here: {image}"
    head, sep, tag = name.rpartition(":")
    if sep and "/" not in tag:
        return head, tag
    return name, None


def containers(node: Any):
    """Every container (containers, initContainers) anywhere in a document."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from (c for c in value if isinstance(c, dict))
            else:
                yield from containers(value)
    elif isinstance(node, list):
        for value in node:
            yield from containers(value)


def render(folder: Path) -> list[dict[str, Any]]:
    """`kustomize build` for the features kustomization.yaml uses (KUSTOMIZE_KEYS)."""
    kust = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(kust) - KUSTOMIZE_KEYS
    if unknown:
        raise ValueError(f"kustomization.yaml uses {sorted(unknown)}: teach render() first")
    if not (kust.get("generatorOptions") or {}).get("disableNameSuffixHash"):
        raise ValueError("render() does not compute name-suffix hashes")
    docs = [d for name in kust.get("resources", []) for d in load_docs(folder / name)]
    for gen in kust.get("configMapGenerator", []):
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}})
        docs[-1]["data"] = generated_data(folder, gen)
    for gen in kust.get("secretGenerator", []):
        data = generated_data(folder, gen)
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": gen["name"]},
                "type": gen.get("type", "Opaque"),
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
            }
        )
    for doc in docs:
        if kust.get("namespace"):
            doc["metadata"]["namespace"] = kust["namespace"]
        for container in containers(doc):
            name, tag = split_image(container["image"])
            for entry in kust.get("images", []):
                if entry["name"] == name:
                    new = entry.get("newName", name)
                    new_tag = entry.get("newTag", tag)
                    container["image"] = f"{new}:{new_tag}" if new_tag else new
    return docs


def generated_data(folder: Path, gen: dict[str, Any]) -> dict[str, str]:
    unknown = set(gen) - {"name", "literals", "envs"}
    if unknown:
        raise ValueError(f"generator {gen['name']} uses {sorted(unknown)}: teach render() first")
    data: dict[str, str] = {}
    for env in gen.get("envs", []):
        data.update(parse_env_file(folder / env))
    for literal in gen.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    return data


def by_name(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    out = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert len(out) == len(docs), "two documents share a kind and a name"
    return out


def filled_secrets(folder: Path) -> None:
    """secrets.env as a user writes it: every value of secrets.env.example filled in."""
    example = parse_env_file(folder / "secrets.env.example")
    (folder / "secrets.env").write_text("".join(f"{k}=test-{k.lower()}\n" for k in example))


@pytest.fixture
def kustomize_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "kuberay"
    shutil.copytree(KUBERAY, folder, ignore=shutil.ignore_patterns("secrets.env"))
    filled_secrets(folder)
    return folder


@pytest.fixture
def rendered(kustomize_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    return by_name(render(kustomize_dir))


# ----------------------------------------------------------------------------- validation
def strict_crd_schema(schema: Any) -> Any:
    """The CRD schema with unknown fields rejected, as the API server's strict field
    validation (kubectl's default, --validate=strict) does; preserved-unknown fields stay."""
    if isinstance(schema, dict):
        out = {k: strict_crd_schema(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict_crd_schema(v) for v in schema]
    return schema


def raycluster_errors(doc: dict[str, Any]) -> list[str]:
    import jsonschema

    schema = strict_crd_schema(json.loads(RAYCLUSTER_SCHEMA.read_text()))
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(doc)
    ]


def kubernetes_versions() -> list[str]:
    from kubernetes_validate.utils import all_versions

    versions = sorted(set(all_versions()), key=lambda v: tuple(map(int, v.split("."))))
    return [versions[0], versions[-1]]


def validation_errors(doc: dict[str, Any]) -> list[str]:
    """Errors of one rendered document; [] if valid."""
    if doc["kind"] == "RayCluster":
        assert doc["apiVersion"] == "ray.io/v1"
        return raycluster_errors(doc)
    import kubernetes_validate

    errors = []
    for version in kubernetes_versions():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = "/".join(map(str, e.path))
            errors.append(f"Kubernetes {version}: {path}: {e.message}")
    return errors


def test_the_raycluster_matches_the_crd_of_the_oldest_kuberay(rendered) -> None:
    errors = validation_errors(rendered[("RayCluster", "pcd")])
    assert not errors, "\n".join(errors)


def test_every_other_rendered_document_is_valid(rendered) -> None:
    problems = [
        f"{kind}/{name}: {error}"
        for (kind, name), doc in rendered.items()
        if kind != "RayCluster"
        for error in validation_errors(doc)
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    "kind, name, path, value",
    [
        ("Deployment", "pcd-api", ["spec", "replica"], 1),  # a typo: unknown field
        ("StatefulSet", "postgres", ["spec", "replicas"], "1"),  # a string for an integer
        ("Service", "postgres", ["spec", "ports", 0, "port"], "5432"),
        ("PersistentVolumeClaim", "pcd-shared", ["spec", "accessModes"], "ReadWriteMany"),
        ("RayCluster", "pcd", ["spec", "workerGroupSpec"], []),  # a typo: unknown field
        ("RayCluster", "pcd", ["spec", "headGroupSpec", "rayStartParams", "num-gpus"], 0),
        ("RayCluster", "pcd", ["spec", "workerGroupSpecs", 0, "maxReplicas"], "8"),
        ("RayCluster", "pcd", ["spec", "headGroupSpec", "template", "spec", "volume"], []),
    ],
)
def test_validation_rejects_a_broken_document(rendered, kind, name, path, value) -> None:
    doc = copy.deepcopy(rendered[(kind, name)])
    assert not validation_errors(doc)
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert validation_errors(doc), f"{kind}/{name} with {path}={value!r} was accepted"


def test_the_renderer_matches_kubectl_kustomize(kustomize_dir: Path) -> None:
    if not shutil.which("kubectl"):
        pytest.skip("kubectl is not installed: the renderer is not compared with kustomize")
    proc = subprocess.run(
        ["kubectl", "kustomize", str(kustomize_dir)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    theirs = by_name([d for d in yaml.safe_load_all(proc.stdout) if d])
    assert by_name(render(kustomize_dir)) == theirs


def test_the_renderer_refuses_what_it_does_not_implement(kustomize_dir: Path) -> None:
    path = kustomize_dir / "kustomization.yaml"
    kust = yaml.safe_load(path.read_text())
    for key, value in (("patches", []), ("commonLabels", {"a": "b"})):
        path.write_text(yaml.safe_dump({**kust, key: value}))
        with pytest.raises(ValueError, match=key):
            render(kustomize_dir)
    path.write_text(yaml.safe_dump({**kust, "generatorOptions": {}}))
    with pytest.raises(ValueError, match="hash"):
        render(kustomize_dir)


# ----------------------------------------------------------------------------- invariants
def test_kuberay_manifests(rendered) -> None:
    docs = kuberay_docs()
    kustomization = docs.pop("kustomization.yaml")[0]
    assert set(kustomization["resources"]) == set(docs), "kustomization lists other files"
    kinds = {kind for kind, _ in rendered}
    assert kinds == {
        "ConfigMap",
        "Deployment",
        "PersistentVolumeClaim",
        "RayCluster",
        "Secret",
        "Service",
        "StatefulSet",
    }, kinds
    cluster = rendered[("RayCluster", "pcd")]
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

    def secret_refs(container: dict[str, Any]) -> set[str]:
        return {e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e}

    api = rendered[("Deployment", "pcd-api")]["spec"]["template"]["spec"]["containers"][0]
    for c in (head_c, worker, api):
        assert "pcd-secrets" in secret_refs(c)
        assert {"mountPath": "/srv/pcd", "name": "shared"} in c["volumeMounts"]
    autoscaler_env = {e["name"]: e for e in spec["autoscalerOptions"]["env"]}
    assert autoscaler_env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "pcd-secrets"
    assert rendered[("Service", "pcd-api")]["spec"]["ports"][0]["port"] == 8000
    probe = api["readinessProbe"]["httpGet"]
    assert probe["path"] == "/readyz"
    example = parse_env_file(KUBERAY / "secrets.env.example")
    assert "RAY_AUTH_TOKEN" in example and all(v == "" for v in example.values())
    config = rendered[("ConfigMap", "pcd-config")]["data"]
    assert config["PCD_RAY_ADDRESS"] == "http://pcd-head-svc:8265"
    assert config["RAY_AUTH_MODE"] == "token"
    secret = rendered[("Secret", "pcd-secrets")]["data"]
    assert set(secret) == set(example), "the Secret holds what secrets.env.example lists"
    for doc in rendered.values():
        assert doc["metadata"]["namespace"] == "pcd"
    # KubeRay's default readiness/liveness probes run wget inside the Ray containers.
    assert re.search(r"apt-get install [^\n]*\bwget\b", DOCKERFILE.read_text())


def test_images_come_from_the_kustomization(kustomize_dir: Path) -> None:
    version = project_version()
    kust = yaml.safe_load((kustomize_dir / "kustomization.yaml").read_text())
    entries = {e["name"]: e for e in kust["images"]}
    assert set(entries) == {"pcd", "pcd-api"}
    assert all(e["newTag"] == version for e in entries.values()), "image tag != project version"
    images = {
        (kind, name): [c["image"] for c in containers(doc)]
        for (kind, name), doc in by_name(render(kustomize_dir)).items()
    }
    assert images[("RayCluster", "pcd")] == [f"pcd:{version}", f"pcd:{version}"]
    assert images[("Deployment", "pcd-api")] == [f"pcd-api:{version}"]
    for image in (i for found in images.values() for i in found):
        name, tag = split_image(image)
        assert tag and tag != "latest", f"{image} has no pinned tag"
        if name not in entries:  # third-party images: a full version, not a moving major
            assert re.fullmatch(r"\d+\.\d+(\.\d+)?(-[a-z0-9.]+)?", tag), image
    # what `kustomize edit set image pcd=registry.example/team/pcd:9.9 ...` writes
    for entry in kust["images"]:
        entry.update(newName=f"registry.example/team/{entry['name']}", newTag="9.9")
    (kustomize_dir / "kustomization.yaml").write_text(yaml.safe_dump(kust))
    moved = by_name(render(kustomize_dir))
    assert {c["image"] for c in containers(moved[("RayCluster", "pcd")])} == {
        "registry.example/team/pcd:9.9"
    }
    assert [c["image"] for c in containers(moved[("Deployment", "pcd-api")])] == [
        "registry.example/team/pcd-api:9.9"
    ]


def test_postgres_creates_the_three_databases(rendered) -> None:
    sts = rendered[("StatefulSet", "postgres")]
    svc = rendered[("Service", "postgres")]
    assert sts["spec"]["serviceName"] == "postgres" and svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"] == sts["spec"]["template"]["metadata"]["labels"]
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/var/lib/postgresql/data"
    env = {e["name"]: e for e in container["env"]}
    assert env["PGDATA"]["value"].startswith("/var/lib/postgresql/data/")  # not the mount root
    for key in ("POSTGRES_USER", "POSTGRES_PASSWORD"):
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "pcd-secrets", "key": key}
    databases = {
        env[k]["value"] for k in ("POSTGRES_DB", "POSTGRES_MLFLOW_DB", "POSTGRES_OPTUNA_DB")
    }
    assert databases == {"pcd", "mlflow", "optuna"}
    # the init script creates the two that the image does not
    init = rendered[("ConfigMap", "postgres-init")]["data"]
    assert mounts["init"] == "/docker-entrypoint-initdb.d"
    (script,) = init.values()
    assert '"$POSTGRES_MLFLOW_DB" "$POSTGRES_OPTUNA_DB"' in script and "CREATE DATABASE" in script
    volume = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "init")
    assert volume["configMap"]["defaultMode"] == 0o555
    # the URLs users are told to write point at this Service and these databases
    example = (KUBERAY / "secrets.env.example").read_text()
    assert "@postgres:5432/pcd\n" in example and "@postgres:5432/optuna\n" in example
    _, tag = split_image(container["image"])
    assert tag and tag.startswith("17."), "PostgreSQL 17, as docker-compose.yml runs"


def test_shared_volume_needs_a_readwritemany_class(rendered) -> None:
    pvc = rendered[("PersistentVolumeClaim", "pcd-shared")]["spec"]
    assert pvc["accessModes"] == ["ReadWriteMany"]
    placeholder = pvc["storageClassName"]
    # not a valid class name, so that the API server rejects an unedited claim loudly
    assert not DNS_SUBDOMAIN.match(placeholder), placeholder
    for valid in ("nfs-client", "efs-sc", "standard-rwx"):
        assert DNS_SUBDOMAIN.match(valid)
    guide = GUIDE.read_text()
    assert placeholder in guide and "ReadWriteMany" in guide
    for rwx in ("NFS", "CephFS", "EFS", "Filestore", "Azure Files"):
        assert rwx in guide and rwx in (KUBERAY / "pvc.yaml").read_text(), rwx


def helm_merge(defaults: Any, values: Any) -> Any:
    """Helm's coalescing of a chart's defaults with user values: maps merge, the rest
    is replaced."""
    if isinstance(defaults, dict) and isinstance(values, dict):
        return {
            **defaults,
            **{k: helm_merge(defaults.get(k), v) for k, v in values.items()},
        }
    return values


def chart_values_errors(values: dict[str, Any]) -> list[str]:
    """What `helm install -f` says of these values: the chart's schema, on the merged values."""
    import jsonschema

    merged = helm_merge(json.loads(MLFLOW_CHART_DEFAULTS.read_text()), values)
    validator = jsonschema.Draft7Validator(json.loads(MLFLOW_CHART_SCHEMA.read_text()))
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(merged)
    ]


def test_mlflow_values_match_the_tracking_uri(rendered) -> None:
    values = yaml.safe_load(MLFLOW_VALUES.read_text())
    assert not chart_values_errors(values), chart_values_errors(values)
    for broken in (
        {**values, "service": {**values["service"], "prot": 80}},  # a typo
        {**values, "service": {**values["service"], "port": "80"}},  # a string for a number
        # two backend stores
        {**values, "backendStore": {**values["backendStore"], "mysql": {"enabled": True}}},
    ):
        assert chart_values_errors(broken), f"the chart schema accepted {broken}"

    uri = urlparse(rendered[("ConfigMap", "pcd-config")]["data"]["PCD_MLFLOW_TRACKING_URI"])
    assert uri.scheme == "http"
    assert uri.hostname == values["fullnameOverride"], "the chart's Service is named otherwise"
    assert uri.port == values["service"]["port"], "the chart's Service listens elsewhere"
    allowed = values["serverAllowedHosts"]
    assert uri.netloc in allowed and uri.hostname in allowed, "MLflow would reject the Host"
    # its database and credentials are those of postgres.yaml and secrets.env
    store = values["backendStore"]
    assert store["postgres"]["host"] == "postgres" and store["postgres"]["database"] == "mlflow"
    example = parse_env_file(KUBERAY / "secrets.env.example")
    secret = store["existingDatabaseSecret"]
    assert secret["name"] == "pcd-secrets"
    assert {secret["usernameKey"], secret["passwordKey"]} <= set(example)
    s3 = values["artifactRoot"]["s3"]["existingSecret"]
    assert s3["name"] == "pcd-secrets"
    assert {s3["keyOfAccessKeyId"], s3["keyOfSecretAccessKey"]} <= set(example)
    assert values["image"]["repository"] == "pcd-mlflow"
    assert values["image"]["tag"] == project_version()


def test_the_guide_states_the_versions_and_steps() -> None:
    guide = GUIDE.read_text()
    header = (KUBERAY / "kustomization.yaml").read_text()
    assert RAYCLUSTER_SCHEMA.exists()
    for text in (guide, header, (KUBERAY / "raycluster.yaml").read_text()):
        assert re.search(rf"KubeRay[^.]*{re.escape(KUBERAY_MIN)}", text), "minimum KubeRay"
    assert "kustomize edit set image" in guide and "kustomize edit set image" in header
    assert f"--version {MLFLOW_CHART}" in guide
    assert f"--version {MLFLOW_CHART}" in MLFLOW_VALUES.read_text()
    assert "kubectl apply -k deploy/kuberay" in guide
    assert "never been applied to a Kubernetes cluster" in guide

"""The Docker/KubeRay deployment files: valid, and true to what README and .env.example say.

No Docker engine is needed. Compose files are validated offline with `docker-compose config`
(Debian's docker-compose v1; `make deploy-tools` installs it) when it is installed, and always
against the Compose Specification JSON schema (deploy/compose-spec.json) after interpolating
them like compose does. Invariants are read from the YAML itself.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pcd_testing.envfile import parse_env_file

ROOT = Path(__file__).resolve().parents[2]
MAIN = ROOT / "docker-compose.yml"
WORKER_HOST = ROOT / "deploy" / "worker-host.compose.yml"
COMPOSE_FILES = [MAIN, WORKER_HOST]
HEAD_HOST = ROOT / "deploy" / "head-host.compose.yml"  # an override of MAIN
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
SCHEMA = ROOT / "deploy" / "compose-spec.json"
KUBERAY = ROOT / "deploy" / "kuberay"
README = ROOT / "README.md"

SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|KEY", re.IGNORECASE)
PURE_REF = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(?:(?::?[-?])[^}]*)?\}$")
VAR_REF = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")
NO_DOCKER_COMPOSE = (
    "neither `docker-compose` nor the Python package `jsonschema` is available, so the compose "
    "files cannot be validated: run `make deploy-tools` (as root: apt-get install "
    "docker-compose) or install jsonschema"
)


# ----------------------------------------------------------------------------- helpers


def filled_env() -> dict[str, str]:
    """.env.example with every empty value filled in, as a user's .env would be."""
    env = parse_env_file(ENV_EXAMPLE)
    filled = {}
    for key, value in env.items():
        if value == "" and key != "PCD_TUNE_STORAGE":
            value = "t1:rw,t2:ro" if key == "PCD_API_TOKENS" else f"test-{key.lower()}"
        filled[key] = value
    return filled


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose variable interpolation: $$, ${V}, ${V:-d}, ${V-d}, ${V:?e}, ${V?e}, $V."""
    pattern = re.compile(
        r"\$(?:(?P<esc>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
        r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
    )

    def sub(m: re.Match[str]) -> str:
        if m.group("esc"):
            return "$"
        if m.group("bare"):
            return env.get(m.group("bare"), "")
        name, op, arg = m.group("name"), m.group("op"), m.group("arg")
        val = env.get(name)
        missing = val is None or (op is not None and op.startswith(":") and val == "")
        if op in ("?", ":?") and missing:
            raise ValueError(f"required variable {name} is missing: {arg}")
        if op in ("-", ":-") and missing:
            return arg
        return val or ""

    return pattern.sub(sub, value)


def interpolate_tree(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(v, env) for v in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def load_compose(path: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    return interpolate_tree(yaml.safe_load(path.read_text()), env or filled_env())


def schema_errors(config: dict[str, Any]) -> list[str]:
    import json

    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    # The file names its draft (2019-09) with a non-canonical $schema URI: say it explicitly.
    validator = jsonschema.Draft201909Validator(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(config)
    ]


def docker_compose_config(path: Path, env_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "docker-compose",
            "--env-file",
            str(env_file),
            "-f",
            str(path),
            "--profile",
            "dashboard",
            "config",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=path.parent,
        # Only the env file: a variable of the caller's shell (or one a Ray test exported,
        # e.g. RAY_AUTH_TOKEN) would override it and hide a missing setting.
        env={k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL")},
    )


def have_jsonschema() -> bool:
    try:
        import jsonschema  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("deploy") / "test.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in filled_env().items()))
    return path


def validate(path: Path, env_file: Path) -> None:
    """docker-compose config if installed, else the compose-spec schema; never silently."""
    if shutil.which("docker-compose"):
        proc = docker_compose_config(path, env_file)
        assert proc.returncode == 0, f"docker-compose config {path.name}:\n{proc.stderr}"
        assert yaml.safe_load(proc.stdout)["services"], proc.stdout
        return
    if not have_jsonschema():
        pytest.fail(NO_DOCKER_COMPOSE)
    errors = schema_errors(load_compose(path, parse_env_file(env_file)))
    assert not errors, f"{path.name} against the compose spec:\n" + "\n".join(errors)


def services(path: Path) -> dict[str, dict[str, Any]]:
    return load_compose(path)["services"]


def walk(node: Any, path: str = ""):
    """(path, key, value) for every mapping entry, anywhere."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield path, str(k), v
            yield from walk(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}[{i}]")


def dicts(node: Any):
    """Every mapping, anywhere (list items included)."""
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from dicts(v)
    elif isinstance(node, list):
        for v in node:
            yield from dicts(v)


def readme_deploy() -> str:
    text = README.read_text()
    match = re.search(r"^## Deploy\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, "README.md has no '## Deploy' section"
    return match.group(1)


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_is_valid(path: Path, env_file: Path) -> None:
    validate(path, env_file)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_file_matches_the_compose_spec_schema(path: Path) -> None:
    if not have_jsonschema():
        pytest.fail(NO_DOCKER_COMPOSE)
    errors = schema_errors(load_compose(path))
    assert not errors, "\n".join(errors)


def test_validation_rejects_a_broken_file(tmp_path: Path, env_file: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("services:\n  web:\n    image: x:1\n    helthcheck: {test: [CMD, 'true']}\n")
    with pytest.raises(AssertionError):
        validate(broken, env_file)
    assert schema_errors(load_compose(broken)), "the schema accepted an unknown service key"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_a_missing_secret_fails_loudly(path: Path, tmp_path: Path) -> None:
    env = filled_env()
    env.pop("RAY_AUTH_TOKEN")
    with pytest.raises(ValueError, match="RAY_AUTH_TOKEN"):
        load_compose(path, env)
    if shutil.which("docker-compose"):
        empty = tmp_path / "empty.env"
        empty.write_text("".join(f"{k}={v}\n" for k, v in env.items()) + "RAY_AUTH_TOKEN=\n")
        proc = docker_compose_config(path, empty)
        assert proc.returncode != 0 and "RAY_AUTH_TOKEN" in proc.stderr, proc.stderr


def test_env_example_leaves_every_secret_empty() -> None:
    for key, value in parse_env_file(ENV_EXAMPLE).items():
        if SECRET_NAME.search(key):
            assert value == "", f".env.example ships a value for the secret {key}"


# ----------------------------------------------------------------------------- invariants
@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_every_service_has_a_healthcheck_or_waits_on_a_condition(path: Path) -> None:
    for name, svc in services(path).items():
        check = svc.get("healthcheck") or {}
        healthy = bool(check.get("test")) and not check.get("disable")
        deps = svc.get("depends_on") or {}
        waits = isinstance(deps, dict) and deps and all("condition" in d for d in deps.values())
        assert healthy or waits, f"{path.name}: service {name} has neither"


def test_dependencies_wait_for_health() -> None:
    svcs = services(MAIN)
    for name, svc in svcs.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in svcs, f"{name} depends on unknown {dep}"
            if cond["condition"] == "service_healthy":
                assert svcs[dep].get("healthcheck"), f"{name} waits on {dep}'s missing check"
    api = svcs["api"]["depends_on"]
    for dep in ("postgres", "mlflow", "ray-head"):
        assert api[dep]["condition"] == "service_healthy"
    assert svcs["s3-init"]["depends_on"]["s3"]["condition"] == "service_healthy"
    for dep in ("mlflow", "ray-head"):
        assert svcs[dep]["depends_on"]["s3-init"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_workers_reserve_nvidia_gpus(path: Path) -> None:
    worker = services(path)["ray-worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(
        d.get("driver") == "nvidia"
        and d.get("capabilities") == ["gpu"]
        and (d.get("count") == "all" or (isinstance(d.get("count"), int) and d["count"] >= 1))
        for d in devices
    ), devices
    assert "container_name" not in worker, "--scale ray-worker=N needs no container_name"


def test_one_image_tag_for_head_and_workers() -> None:
    main, host = services(MAIN), services(WORKER_HOST)
    images = {
        main["ray-head"]["image"],
        main["ray-worker"]["image"],
        host["ray-worker"]["image"],
    }
    assert len(images) == 1, images
    env = filled_env()
    assert images == {f"{env['PCD_IMAGE']}:{env['PCD_VERSION']}"}
    for svc in (main["ray-head"], main["ray-worker"], host["ray-worker"]):
        assert svc["build"]["target"] == "ray"
    assert main["api"]["build"]["target"] == "api"
    assert main["mlflow"]["build"]["target"] == "mlflow"
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version and env["PCD_VERSION"] == version.group(1), "image tag != project version"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_every_image_is_pinned(path: Path) -> None:
    for name, svc in services(path).items():
        image = svc["image"]
        tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
        assert tag and tag != "latest", f"{name}: image {image} has no pinned tag"


def test_ray_token_auth_is_the_same_everywhere() -> None:
    raw = [yaml.safe_load(p.read_text())["services"] for p in COMPOSE_FILES]
    nodes = [raw[0]["ray-head"], raw[0]["ray-worker"], raw[0]["api"], raw[1]["ray-worker"]]
    for svc in nodes:
        env = svc["environment"]
        assert env["RAY_AUTH_MODE"] == "token"
        assert env["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN:?"), env["RAY_AUTH_TOKEN"]


def test_head_takes_no_gpu_and_serves_the_jobs_api() -> None:
    svcs = services(MAIN)
    cmd = svcs["ray-head"]["command"]
    assert cmd[:3] == ["ray", "start", "--head"] and "--block" in cmd
    assert "--num-gpus=0" in cmd and "--dashboard-host=0.0.0.0" in cmd
    assert svcs["ray-head"].get("shm_size")
    assert "--address=ray-head:6379" in svcs["ray-worker"]["command"]
    assert svcs["api"]["environment"]["PCD_RAY_ADDRESS"] == "http://ray-head:8265"
    assert svcs["api"]["command"] == ["pcd", "serve", "--host", "0.0.0.0", "--port", "8000"]


def test_mlflow_server_flags() -> None:
    svc = services(MAIN)["mlflow"]
    cmd = svc["command"]
    env = filled_env()

    def arg(flag: str) -> str:
        return cmd[cmd.index(flag) + 1]

    assert arg("--backend-store-uri").startswith("postgresql+psycopg://")
    assert arg("--artifacts-destination") == f"s3://{env['S3_BUCKET']}/mlflow"
    assert "--serve-artifacts" in cmd and "--workers" in cmd
    assert "mlflow:5000" in arg("--allowed-hosts").split(",")
    # a browser on this machine at the published port (MLflow 3 answers 403 to other Hosts)
    raw = yaml.safe_load(MAIN.read_text())["services"]["mlflow"]["command"]
    hosts = interpolate(raw[raw.index("--allowed-hosts") + 1], {**env, "MLFLOW_PORT": "5123"})
    assert {"127.0.0.1:5123", "localhost:5123"} <= set(hosts.split(","))
    assert "/health" in " ".join(svc["healthcheck"]["test"])


def test_shared_volume_on_api_head_and_workers() -> None:
    svcs = services(MAIN)
    for name in ("api", "ray-head", "ray-worker"):
        assert "pcd-shared:/srv/pcd" in svcs[name]["volumes"], name
        env = svcs[name]["environment"]
        assert env["PCD_STUDIES_DIR"] == "/srv/pcd/studies"
        assert env["PCD_DATA_ROOT"] == "/srv/pcd/data"
        assert env["PCD_TEACHER_ROOT"] == "/srv/pcd/teachers"
    host = services(WORKER_HOST)["ray-worker"]
    assert any(v.endswith(":/srv/pcd") for v in host["volumes"])
    assert host["network_mode"] == "host"


def secret_literals(name: str, text: str) -> list[str]:
    """Values of secret-named keys that are not a pure ${VAR} reference, and URL passwords."""
    problems = []
    for doc in yaml.safe_load_all(text):
        for where, key, value in walk(doc):
            # `key` itself is a field of Kubernetes references (secretKeyRef, tolerations).
            if key != "key" and SECRET_NAME.search(key) and isinstance(value, str | int):
                if not PURE_REF.match(str(value)):
                    problems.append(f"{name}{where}/{key}: {value!r}")
            for item in value if isinstance(value, list) else []:
                var, sep, literal = str(item).partition("=")
                if sep and re.fullmatch(r"[A-Z_]+", var) and SECRET_NAME.search(var):
                    if literal and not PURE_REF.match(literal):
                        problems.append(f"{name}{where}/{key}: {item!r}")
        for node in dicts(doc):  # Kubernetes env entries: {name: ..., value: ...}
            if SECRET_NAME.search(str(node.get("name", ""))) and "value" in node:
                if not PURE_REF.match(str(node["value"])):
                    problems.append(f"{name}: env {node['name']} has a literal value")
    refs_hidden = re.sub(r"\$\{[^}]*\}", "\0", text)
    for userinfo in re.findall(r"://([^\s/@'\"]+)@", refs_hidden):
        password = userinfo.partition(":")[2]
        if password and password != "\0":
            problems.append(f"{name}: a literal password in a URL: {userinfo!r}")
    return problems


def test_no_secret_literal_in_compose_files_or_manifests() -> None:
    files = [*COMPOSE_FILES, HEAD_HOST, *sorted(KUBERAY.glob("*.yaml"))]
    problems = [p for path in files for p in secret_literals(path.name, path.read_text())]
    assert not problems, "secret literals:\n" + "\n".join(problems)


def test_the_secret_check_catches_literals() -> None:
    cases = {
        "services: {x: {environment: {POSTGRES_PASSWORD: hunter2}}}": 1,
        "services: {x: {environment: [RAY_AUTH_TOKEN=abc]}}": 1,
        "env: [{name: RAY_AUTH_TOKEN, value: abc}]": 1,
        "command: [db, 'postgresql+psycopg://${U:?u in .env}:hunter2@postgres/db']": 1,
        "command: [db, 'postgresql+psycopg://${U:?u in .env}:${P:?p in .env}@postgres/db']": 0,
        "services: {x: {environment: {POSTGRES_PASSWORD: '${POSTGRES_PASSWORD:?set it}'}}}": 0,
        "env: [{name: RAY_AUTH_TOKEN, valueFrom: {secretKeyRef: {name: s, key: T}}}]": 0,
    }
    for text, expected in cases.items():
        assert len(secret_literals("case", text)) == expected, text


def test_every_variable_is_in_env_example() -> None:
    defined = set(parse_env_file(ENV_EXAMPLE))
    for path in [*COMPOSE_FILES, HEAD_HOST]:
        used = set(VAR_REF.findall(path.read_text()))
        assert used, path
        missing = used - defined
        assert not missing, f"{path.name} uses {sorted(missing)}, absent from .env.example"


def test_env_example_documents_every_service_setting() -> None:
    from service.settings import Settings

    text = ENV_EXAMPLE.read_text()
    for field in Settings.model_fields:
        name = f"PCD_{field.upper()}"
        assert re.search(rf"^#?\s*{name}=", text, re.M) or f"{name}=" in text, name
    for name in ("PCD_RAY_ADDRESS", "PCD_TUNE_STORAGE", "PCD_MLFLOW_TRACKING_URI"):
        assert name in parse_env_file(ENV_EXAMPLE), name


def published_ports(path: Path) -> dict[int, tuple[str, str]]:
    """Default host port -> (service, bind address), with .env.example's values."""
    env = filled_env()
    out = {}
    for name, svc in services(path).items():
        for port in svc.get("ports", []):
            address, host_port, _ = interpolate(str(port), env).split(":")
            out[int(host_port)] = (name, address)
    return out


def test_ports_are_published_on_loopback_by_default() -> None:
    ports = published_ports(MAIN)
    assert ports and {address for _, address in ports.values()} == {"127.0.0.1"}
    # unauthenticated UIs follow their own address, so exposing the API does not expose them
    for name, svc in yaml.safe_load(MAIN.read_text())["services"].items():
        for port in svc.get("ports", []):
            variable = (
                "UI_PUBLISH_ADDRESS"
                if name in ("mlflow", "optuna-dashboard")
                else ("PUBLISH_ADDRESS")
            )
            assert str(port).startswith(f"${{{variable}:-127.0.0.1}}:"), (name, port)


def test_readme_ports_match_the_published_ports() -> None:
    section = readme_deploy()
    rows = re.findall(r"^\|\s*(\d{2,5})\s*\|\s*`?([\w-]+)`?\s*\|", section, re.M)
    assert rows, "README Deploy section has no | port | service | table"
    documented = {int(port): svc for port, svc in rows}
    assert documented == {port: svc for port, (svc, _) in published_ports(MAIN).items()}
    for url_port in re.findall(r"http://HOST:(\d+)", section):
        assert int(url_port) in documented, url_port


def test_worker_host_comment_lists_every_pinned_port() -> None:
    text = WORKER_HOST.read_text()
    comment = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    cmd = services(WORKER_HOST)["ray-worker"]["command"]
    pinned = {a.split("=")[0]: a.split("=")[1] for a in cmd if a.endswith(tuple("0123456789"))}
    for flag in (
        "--node-manager-port",
        "--object-manager-port",
        "--min-worker-port",
        "--max-worker-port",
    ):
        assert flag in pinned, flag
    for flag, port in pinned.items():
        if flag.endswith("-port"):
            assert port in comment, f"{flag}={port} is not listed in the ports comment"
    for port in ("6379", "8265"):
        assert port in comment
    assert "NFS" in comment and "/srv/pcd" in comment
    head = services(MAIN)["ray-head"]["command"]
    for flag, port in pinned.items():
        if flag.endswith("-port"):
            assert f"{flag}={port}" in head, f"the head does not pin {flag}={port}"
    ports = published_ports(MAIN)
    assert ports[6379][0] == "ray-head" and ports[8265][0] == "ray-head"


# ----------------------------------------------------------------------------- Dockerfile
def dockerfile_stages() -> dict[str, list[str]]:
    stages: dict[str, list[str]] = {}
    current = None
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.I)
        if m:
            current = m.group(1)
            stages[current] = []
        if current:
            stages[current].append(line)
    return stages


def test_dockerfile_final_images_are_non_root_with_a_healthcheck() -> None:
    stages = dockerfile_stages()
    for target in ("ray", "api", "mlflow", "dashboard"):
        lines = stages[target]
        users = [ln.split()[1] for ln in lines if ln.upper().startswith("USER ")]
        assert users and users[-1] not in ("root", "0"), f"{target}: runs as {users}"
        assert any(ln.upper().startswith("HEALTHCHECK ") for ln in lines), target


def test_dockerfile_pins_python_ray_and_torch() -> None:
    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=python:(3\.11)[.\d]*-slim", text, re.M)
    assert base, "the base image is not a pinned python:3.11 slim"
    assert len(re.findall(r"^FROM \$\{PYTHON_IMAGE\}", text, re.M)) == 1
    assert re.search(r"^ARG RAY_VERSION=2\.60\.0$", text, re.M)
    assert re.search(r"^ARG TORCH_VERSION=2\.13\.0$", text, re.M)
    # CUDA 13.0 by default (torch 2.13 has cu126 and cu130 builds), CPU torch for the API
    assert re.search(r"^ARG TORCH_INDEX=cu130$", text, re.M)
    assert 'TORCH_INDEX=cpu pip-install --torch "${TORCH_VERSION}"' in text
    pip_install = (ROOT / "deploy" / "pip-install.sh").read_text()
    assert "https://download.pytorch.org/whl/$index" in pip_install
    assert text.count("-c constraints.txt") >= 2
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"ray[default,tune]==2.60.0"' in pyproject and '"torch==2.13.0"' in pyproject
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignore and ".git" in ignore and ".venv" in ignore


# ----------------------------------------------------------------------------- several hosts
def _flag(command: list[str], name: str) -> str:
    values = [c.split("=", 1)[1] for c in command if c.startswith(f"--{name}=")]
    assert len(values) == 1, (name, command)
    return values[0]


def test_head_host_override_merges_into_a_valid_file(env_file: Path) -> None:
    if shutil.which("docker-compose"):
        proc = subprocess.run(
            [
                *("docker-compose", "--env-file", str(env_file)),
                *("-f", str(MAIN), "-f", str(HEAD_HOST), "config"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stderr
        merged = yaml.safe_load(proc.stdout)["services"]
        assert merged["ray-head"]["network_mode"] == "host"
        return
    if not have_jsonschema():
        pytest.fail(NO_DOCKER_COMPOSE)
    errors = schema_errors(load_compose(HEAD_HOST, parse_env_file(env_file)))
    assert not errors, "\n".join(errors)


def test_head_host_nodes_advertise_the_address_other_hosts_reach() -> None:
    """Workers on other hosts join RAY_HEAD_ADDRESS and must reach every node of the head's
    host at the address it advertises: both run on the host network and advertise it."""
    override = yaml.safe_load(HEAD_HOST.read_text())["services"]
    env = filled_env()
    head, worker = override["ray-head"], override["ray-worker"]
    for node in (head, worker):
        assert node["network_mode"] == "host"
        assert (
            _flag(node["command"], "node-ip-address")
            == "${RAY_HEAD_ADDRESS:?set RAY_HEAD_ADDRESS in .env}"
        )
        # drivers and trials on the host network still find MLflow, S3, Postgres by name
        hosts = {h.split(":", 1)[0] for h in node["extra_hosts"]}
        assert {"mlflow", "s3", "postgres"} <= hosts
    assert _flag(worker["command"], "address").startswith("${RAY_HEAD_ADDRESS")
    # two nodes on one host network: none of their pinned ports may coincide
    names = [
        "node-manager-port",
        "object-manager-port",
        "runtime-env-agent-port",
        "dashboard-agent-grpc-port",
        "dashboard-agent-listen-port",
        "metrics-export-port",
    ]
    head_cfg = interpolate_tree(head["command"], env)
    worker_cfg = interpolate_tree(worker["command"], env)
    head_ports = {int(_flag(head_cfg, n)) for n in names} | {6379, 8265}
    worker_ports = {int(_flag(worker_cfg, n)) for n in names}
    head_range = range(
        int(_flag(head_cfg, "min-worker-port")), int(_flag(head_cfg, "max-worker-port")) + 1
    )
    worker_range = range(
        int(_flag(worker_cfg, "min-worker-port")), int(_flag(worker_cfg, "max-worker-port")) + 1
    )
    assert len(worker_ports) == len(names) and not head_ports & worker_ports
    assert not set(head_range) & set(worker_range)
    assert not (head_ports | worker_ports) & (set(head_range) | set(worker_range))
    # Postgres, which drivers on the head need, is published on the loopback interface only
    assert override["postgres"]["ports"] == ["127.0.0.1:5432:5432"]
    assert override["api"]["extra_hosts"] == ["ray-head:host-gateway"]
    # the base file must not pin a hostname: it conflicts with the host network
    assert "hostname" not in services(MAIN)["ray-head"]

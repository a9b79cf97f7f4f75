"""Turn the resolved docker-compose.yml into the file `make rehearse-compose` runs.

Input: the output of `docker-compose config` (the user's file with the rehearsal's .env).
Every change is one that this machine forces, and each is printed:
  - builds use the host network (`docker build --network host`) and start from BASE_IMAGE;
  - the Ray image is its CPU variant (TORCH_INDEX=cpu) and the workers reserve no GPU;
  - postgres and s3 (images from registries) are local stand-ins built from
    deploy/rehearsal/*.Dockerfile when the registries cannot be reached (--stand-ins).
Everything else (services, commands, environment, healthchecks, volumes, networks, published
ports) is the user's file as it is.

Usage: python compose_for_rehearsal.py CONFIG_IN OUT --base-image IMG --deploy-dir DIR
       [--stand-ins]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

STAND_INS = {
    "postgres": ("pcd-rehearsal/postgres:15", "rehearsal/postgres.Dockerfile", None),
    "s3": (
        "pcd-rehearsal/s3-moto:5.2.5",
        "rehearsal/s3.Dockerfile",
        ["CMD", "python3", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8333/')"],
    ),
}


def _say(change: str) -> None:
    print(f"[rehearse-compose] compose change: {change}")


def build_locally(services: dict[str, Any], base_image: str) -> None:
    for name, svc in services.items():
        build = svc.get("build")
        if not build:
            continue
        build["network"] = "host"
        args = build.setdefault("args", {})
        args["PYTHON_IMAGE"] = base_image
        if build.get("target") == "ray":
            args["TORCH_INDEX"] = "cpu"
            _say(f"{name}: Ray image with CPU torch (TORCH_INDEX=cpu)")
    _say(f"builds: --network host, base image {base_image}")


def drop_gpu_reservations(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        reservations = svc.get("deploy", {}).get("resources", {}).get("reservations", {})
        if reservations.pop("devices", None) is not None:
            _say(f"{name}: no GPU reservation (no NVIDIA runtime here)")


def use_stand_ins(services: dict[str, Any], base_image: str, deploy_dir: Path) -> None:
    for name, (image, dockerfile, healthcheck) in STAND_INS.items():
        svc = services[name]
        _say(f"{name}: {svc['image']} -> local stand-in {image} ({dockerfile})")
        svc["image"] = image
        svc["build"] = {
            "context": str(deploy_dir),
            "dockerfile": dockerfile,
            "network": "host",
            "args": {"BASE_IMAGE": base_image},
        }
        if healthcheck is not None:
            svc.pop("entrypoint", None)
            svc.pop("command", None)
            svc["healthcheck"]["test"] = healthcheck


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config_in", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--base-image", required=True)
    parser.add_argument("--deploy-dir", type=Path, required=True)
    parser.add_argument("--stand-ins", action="store_true")
    args = parser.parse_args()
    config = yaml.safe_load(args.config_in.read_text())
    services = config["services"]
    build_locally(services, args.base_image)
    drop_gpu_reservations(services)
    if args.stand_ins:
        use_stand_ins(services, args.base_image, args.deploy_dir.resolve())
    args.out.write_text(yaml.safe_dump(config, sort_keys=False))


if __name__ == "__main__":
    main()

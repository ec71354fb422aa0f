"""What the Helm chart's tests share: the chart rendered with `helm template` from the
install options README gives, its Deployments and their containers' environment, and
kubeconform run against the Kubernetes schemas in .cache (no cluster, no network)."""

from __future__ import annotations

import re
import secrets
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests import kubernetes_schemas
from tests.integration.deploy_files import ROOT, ROUTER_STAGE_SERVICE, run, tool

CHART = ROOT / "deploy" / "helm" / "customer-routing"
KUBERNETES_VERSIONS = ("1.30.0", "1.35.0")
SCHEMA_FILES = ["deployment-apps-v1.json", "service-v1.json", "configmap-v1.json",
                "secret-v1.json"]
# The mode of a file from a Secret volume that sets neither `defaultMode` nor the item's
# `mode` (the SecretVolumeSource's documented default): any user in the container reads it.
KUBERNETES_SECRET_FILE_MODE = 0o644


def chart_values(**extra: str) -> list[str]:
    """Install options as the README gives them, with a password made up for this run."""
    options = {"kafka.bootstrapServers": "kafka.streaming:9092",
               "postgresql.host": "postgresql.data", "postgresql.password":
               secrets.token_urlsafe(16), **extra}
    return ["--set-file", "config.routingTable=config/routing.yaml",
            "--set-file", "config.segmentRules=config/segments.yaml",
            *(f"--set={key}={value}" for key, value in options.items())]


def helm_template(*options: str) -> subprocess.CompletedProcess[str]:
    return run(tool("helm"), "template", "routing", str(CHART), *options)


def rendered_chart(**extra: str) -> list[dict[str, Any]]:
    result = helm_template(*chart_values(**extra))
    assert result.returncode == 0, result.stderr
    return manifests_of(result.stdout)


def manifests_of(rendered: str) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(rendered) if document]


def deployments(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in manifests
            if d["kind"] == "Deployment"}


def standalone_schemas(out: Path) -> Path:
    """kubeconform's schemas of the kinds the chart renders, for KUBERNETES_VERSIONS."""
    for version in KUBERNETES_VERSIONS:
        kubernetes_schemas.standalone(version, SCHEMA_FILES, out)
    return out


def kubeconform(manifests: str, version: str, schemas: Path) -> subprocess.CompletedProcess[str]:
    return run(tool("kubeconform"), "-strict", "-summary", "-kubernetes-version", version,
               "-schema-location", f"{schemas}/{kubernetes_schemas.LOCATION}", "-",
               stdin=manifests)


def program(name: str) -> str:
    """The program a chart service runs: router-stage is the router, routing."""
    return "router" if name == ROUTER_STAGE_SERVICE else name


def container_env(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    return env


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of an env value from the variables set before it."""
    return re.sub(r"\$\((\w+)\)", lambda match: env[match.group(1)], value)


def pod_environment(deployment: dict[str, Any], secrets: dict[str, dict[str, str]],
                    root: Path) -> dict[str, str]:
    """The environment a pod of `deployment` starts with, as Kubernetes would give it:
    `secretKeyRef`s read from `secrets` (Secret name, then key: content), the pod's name
    for `metadata.name`, and each Secret volume's items written as files under `root` at
    their mount path with the mode Kubernetes gives them (the item's `mode`, else the
    volume's `defaultMode`, else KUBERNETES_SECRET_FILE_MODE), a value naming a mounted
    file moved there alike."""
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounted: dict[str, Path] = {}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "secret" not in volume:
            continue
        content = secrets[volume["secret"]["secretName"]]
        target = root / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        for item in volume["secret"]["items"]:
            file = target / item["path"]
            file.write_text(content[item["key"]], encoding="utf-8")
            file.chmod(item.get("mode", volume["secret"].get("defaultMode",
                                                             KUBERNETES_SECRET_FILE_MODE)))
        mounted[mount["mountPath"]] = target
    env: dict[str, str] = {}
    for variable in container["env"]:
        name, source = variable["name"], variable.get("valueFrom", {})
        if "value" in variable:
            value = expand(variable["value"], env)
            for mount_path, target in mounted.items():
                if value.startswith(f"{mount_path}/"):
                    value = str(target / value.removeprefix(f"{mount_path}/"))
            env[name] = value
        elif "secretKeyRef" in source:
            reference = source["secretKeyRef"]
            env[name] = secrets[reference["name"]][reference["key"]]
        else:
            assert source == {"fieldRef": {"fieldPath": "metadata.name"}}, name
            env[name] = f"{deployment['metadata']['name']}-7d9f8c6b5-x2k4q"
    return env

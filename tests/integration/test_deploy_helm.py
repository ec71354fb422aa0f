"""The Helm chart lints, renders manifests the Kubernetes schemas accept (kubeconform),
and its pods read their settings, probes, resources and secret as the code expects."""

from __future__ import annotations

import re
import secrets
import subprocess
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from services.core import serve
from services.core.settings import Settings
from tests import kafka_acls, kubernetes_schemas
from tests.integration.deploy_files import (
    APP_SERVICES,
    DOCKERFILE,
    PROMETHEUS,
    ROOT,
    ROUTER_STAGE_SERVICE,
    SETTINGS_ENV,
    load_yaml,
    run,
    settings_of,
    tool,
)

CHART = ROOT / "deploy" / "helm" / "customer-routing"
KUBERNETES_VERSIONS = ("1.30.0", "1.35.0")


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
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def deployments(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in manifests
            if d["kind"] == "Deployment"}


def kubeconform(manifests: str, version: str, schemas: Path) -> subprocess.CompletedProcess[str]:
    return run(tool("kubeconform"), "-strict", "-summary", "-kubernetes-version", version,
               "-schema-location", f"{schemas}/{kubernetes_schemas.LOCATION}", "-",
               stdin=manifests)


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not kubernetes_schemas.SCHEMAS.is_dir():
        pytest.fail("no Kubernetes schemas; `bin/setup --test` installs them")
    out = tmp_path_factory.mktemp("kubernetes-schemas")
    for version in KUBERNETES_VERSIONS:
        kubernetes_schemas.standalone(version, ["deployment-apps-v1.json", "service-v1.json",
                                                "configmap-v1.json", "secret-v1.json"], out)
    return out


def test_helm_lint_passes() -> None:
    result = run(tool("helm"), "lint", "--strict", str(CHART), *chart_values())
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_rendered_chart_matches_the_kubernetes_schemas(version: str, schemas: Path) -> None:
    result = helm_template(*chart_values(), "--kube-version", version)
    assert result.returncode == 0, result.stderr
    checked = kubeconform(result.stdout, version, schemas)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # A Deployment and a Service for each of the four services, a ConfigMap, a Secret.
    assert "Valid: 10, Invalid: 0, Errors: 0, Skipped: 0" in checked.stdout


def test_kubeconform_rejects_a_broken_manifest(schemas: Path) -> None:
    """The check above means something: the same schemas refuse a misspelt probe."""
    manifests = rendered_chart()
    router = deployments(manifests)["router"]
    container = router["spec"]["template"]["spec"]["containers"][0]
    container["livenesProbe"] = container.pop("livenessProbe")
    checked = kubeconform(yaml.safe_dump_all(manifests), KUBERNETES_VERSIONS[0], schemas)
    assert checked.returncode != 0
    assert "livenesProbe" in checked.stdout


def program(name: str) -> str:
    """The program a chart service runs: router-stage is the router, routing."""
    return "router" if name == ROUTER_STAGE_SERVICE else name


def test_every_deployment_has_probes_resources_and_replicas() -> None:
    values = load_yaml(CHART / "values.yaml")
    defaults = {name: service["replicas"] for name, service in values["services"].items()}
    # as the README says
    assert defaults == {"router": 2, ROUTER_STAGE_SERVICE: 2, "segmenter": 2, "metrics": 1}
    assert values["kafka"]["topicPartitions"] == 6
    found = deployments(rendered_chart(**{"services.segmenter.replicas": "4"}))
    assert set(found) == {*APP_SERVICES, ROUTER_STAGE_SERVICE}
    for name, deployment in found.items():
        expected_replicas = 4 if name == "segmenter" else values["services"][name]["replicas"]
        assert deployment["spec"]["replicas"] == expected_replicas, name
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["python", "-m", f"services.{program(name)}"]
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz", name
        startup = container["startupProbe"]
        # Migrations queued at a first install, or a store or broker waited for:
        # README's 10 minutes, not the liveness probe's 30 s.
        assert startup["periodSeconds"] * startup["failureThreshold"] == 600, name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] \
            == serve.STOP_GRACE_SECONDS, name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["ports"] == [{"name": "http",
                                       "containerPort": values["services"][name]["port"]}]
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), name
        assert {"cpu", "memory"} <= set(resources["limits"]), name
        pod_security = deployment["spec"]["template"]["spec"]["securityContext"]
        assert pod_security["runAsNonRoot"] is True
        assert f"--uid {pod_security['runAsUser']} " in DOCKERFILE.read_text("utf-8")
        assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_a_new_routing_table_rolls_the_pods(tmp_path: Path) -> None:
    changed = tmp_path / "routing.yaml"
    changed.write_text((ROOT / "config" / "routing.yaml").read_text("utf-8") + "\n# new\n",
                       encoding="utf-8")
    annotations = []
    for extra in ([], ["--set-file", f"config.routingTable={changed}"]):
        result = helm_template(*chart_values(), *extra)
        assert result.returncode == 0, result.stderr
        manifests = [m for m in yaml.safe_load_all(result.stdout) if m]
        annotations.append({name: d["spec"]["template"]["metadata"]["annotations"]
                            ["checksum/config"] for name, d in deployments(manifests).items()})
    before, after = annotations
    assert set(before) == {*APP_SERVICES, ROUTER_STAGE_SERVICE}
    assert all(before[name] != after[name] for name in before)


def container_env(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    return env


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion of an env value from the variables set before it."""
    return re.sub(r"\$\((\w+)\)", lambda match: env[match.group(1)], value)


def test_pods_read_their_settings_from_the_chart(monkeypatch: pytest.MonkeyPatch) -> None:
    # As a secret store may make one: characters a URL holds only percent-encoded.
    password = f"{secrets.token_urlsafe(8)}@:/%41#?&= "
    manifests = rendered_chart(**{"postgresql.password": password})
    [secret] = [m for m in manifests if m["kind"] == "Secret"]
    values = load_yaml(CHART / "values.yaml")
    for name, deployment in deployments(manifests).items():
        env: dict[str, str] = {}
        for variable in container_env(deployment):
            if "value" in variable:
                env[variable["name"]] = expand(variable["value"], env)
            elif variable["name"] == "DATABASE_PASSWORD":
                reference = variable["valueFrom"]["secretKeyRef"]
                assert reference["name"] == secret["metadata"]["name"]
                env["DATABASE_PASSWORD"] = secret["stringData"][reference["key"]]
            else:  # the pod's name, from the downward API
                assert variable["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
                env[variable["name"]] = f"routing-customer-routing-{name}-7d9f8c6b5-x2k4q"
        assert set(env) <= SETTINGS_ENV, name
        settings = settings_of({"environment": env}, monkeypatch)
        assert settings.instance_id == env["INSTANCE_ID"], name
        database = make_url(settings.database_url)
        assert (database.username, database.password, database.host, database.port,
                database.database) == ("routing", password, "postgresql.data", 5432,
                                       "routing"), name
        assert settings.kafka_bootstrap_servers == "kafka.streaming:9092"
        assert settings.kafka_topic_partitions == values["kafka"]["topicPartitions"]
        assert settings.kafka_replication_factor == values["kafka"]["replicationFactor"] == 3
        assert settings.host == "0.0.0.0"
        assert getattr(settings, f"{program(name)}_port") == values["services"][name]["port"]
        # The intake's pods run no routing stage; router-stage's pods route.
        assert settings.router_stage is (name != "router"), name
        mounted = {Path(mount["mountPath"]) for mount in
                   deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
        assert {settings.segment_rules_file.parent, settings.routing_table_file.parent} \
            <= mounted


def test_pods_connect_to_a_secured_kafka_as_their_own_user(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, schemas: Path) -> None:
    """With SASL_SSL each service's pods connect as its own user (the users whose ACLs
    tests/kafka_acls.py grants and docs/kafka-security.md lists), the password read from
    a Secret under that user's name, the brokers' CA mounted from another."""
    secured = {"kafka.securityProtocol": "SASL_SSL", "kafka.saslSecret": "routing-kafka",
               "kafka.caSecret": "routing-kafka-ca"}
    version = KUBERNETES_VERSIONS[-1]
    result = helm_template(*chart_values(**secured), "--kube-version", version)
    assert result.returncode == 0, result.stderr
    checked = kubeconform(result.stdout, version, schemas)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    manifests = [document for document in yaml.safe_load_all(result.stdout) if document]
    for name, deployment in deployments(manifests).items():
        variables = {variable["name"]: variable for variable in container_env(deployment)}
        user = variables["KAFKA_SASL_USERNAME"]["value"]
        assert user == program(name) and hasattr(kafka_acls, user), name
        assert variables["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "routing-kafka", "key": user}
        pod = deployment["spec"]["template"]["spec"]
        mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
        [volume] = [v for v in pod["volumes"] if v["name"] == "kafka-ca"]
        assert volume["secret"] == {"secretName": "routing-kafka-ca",
                                    "items": [{"key": "ca.crt", "path": "ca.crt"}]}
        assert mounts["kafka-ca"]["readOnly"] is True
        assert Path(variables["KAFKA_SSL_CAFILE"]["value"]) \
            == Path(mounts["kafka-ca"]["mountPath"]) / "ca.crt"
        # What Settings makes of them, the Secret's password and the CA file given.
        plain = {key: variable["value"] for key, variable in variables.items()
                 if "value" in variable and key.startswith("KAFKA_")}
        settings = settings_of({"environment": {**plain, "KAFKA_SASL_PASSWORD": "secret",
                                                "KAFKA_SSL_CAFILE": str(ca)}}, monkeypatch)
        assert (settings.kafka_security_protocol, settings.kafka_sasl_mechanism,
                settings.kafka_sasl_username) == ("SASL_SSL", "SCRAM-SHA-512", user)


@pytest.mark.parametrize(("values", "named"), [
    ({"kafka.securityProtocol": "SASL_SSL"}, "kafka.saslSecret"),
    ({"kafka.caSecret": "routing-kafka-ca"}, "kafka.caSecret"),
    ({"kafka.securityProtocol": "TLS"}, "kafka.securityProtocol"),
    ({"kafka.securityProtocol": "SASL_SSL", "kafka.saslSecret": "routing-kafka",
      "kafka.saslMechanism": "SCRAM-SHA512"}, "kafka.saslMechanism")])
def test_a_kafka_security_that_cannot_work_is_refused_naming_the_value(
        values: dict[str, str], named: str) -> None:
    refused = helm_template(*chart_values(**values))
    assert refused.returncode != 0
    assert named in refused.stderr


@pytest.mark.parametrize("mechanism", typing.get_args(
    Settings.model_fields["kafka_sasl_mechanism"].annotation))
def test_every_sasl_mechanism_the_services_accept_renders(mechanism: str) -> None:
    rendered = helm_template(*chart_values(**{
        "kafka.securityProtocol": "SASL_SSL", "kafka.saslSecret": "routing-kafka",
        "kafka.saslMechanism": mechanism}))
    assert rendered.returncode == 0, rendered.stderr
    assert mechanism in rendered.stdout


def test_pods_get_no_variables_from_the_namespaces_services(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Kubernetes gives a pod `<SERVICE>_PORT=tcp://<ip>:<port>` for each Service in its
    namespace unless the pod turns that off: a Service named `metrics` would stop every
    pod that reads `METRICS_PORT`."""
    monkeypatch.setenv("METRICS_PORT", "tcp://10.96.0.12:9000")
    with pytest.raises(ValueError, match="metrics_port"):
        Settings()
    for name, deployment in deployments(rendered_chart()).items():
        assert deployment["spec"]["template"]["spec"]["enableServiceLinks"] is False, name


def test_the_config_map_holds_the_routing_table_and_segment_rules() -> None:
    [config_map] = [m for m in rendered_chart() if m["kind"] == "ConfigMap"]
    defaults = Settings.model_fields
    for field, path in (("routing_table_file", ROOT / "config" / "routing.yaml"),
                        ("segment_rules_file", ROOT / "config" / "segments.yaml")):
        file_name = Path(str(defaults[field].default)).name
        assert yaml.safe_load(config_map["data"][file_name]) == load_yaml(path), file_name


def test_the_chart_commits_no_secret() -> None:
    values = load_yaml(CHART / "values.yaml")
    assert values["postgresql"]["password"] == ""
    without = [option for option in chart_values() if "postgresql.password" not in option]
    refused = helm_template(*without)
    assert refused.returncode != 0
    assert "postgresql.password" in refused.stderr
    # With an existing Secret the chart makes none and the pods read that one.
    manifests = rendered_chart(**{"postgresql.password": "",
                                  "postgresql.existingSecret": "routing-db"})
    assert not [m for m in manifests if m["kind"] == "Secret"]
    for deployment in deployments(manifests).values():
        [reference] = [v["valueFrom"]["secretKeyRef"] for v in container_env(deployment)
                       if v["name"] == "DATABASE_PASSWORD"]
        assert reference == {"name": "routing-db", "key": "password"}


def test_every_stage_has_a_service_on_its_port() -> None:
    manifests = rendered_chart()
    services = {m["metadata"]["labels"]["app.kubernetes.io/component"]: m for m in manifests
                if m["kind"] == "Service"}
    for name, deployment in deployments(manifests).items():
        selector = services[name]["spec"]["selector"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), name
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        [port] = services[name]["spec"]["ports"]
        assert port["targetPort"] == "http"
    # Support platforms post to the router Service: it selects the intake's pods only.
    routing_pods = deployments(manifests)[ROUTER_STAGE_SERVICE]["spec"]["template"]
    assert not services["router"]["spec"]["selector"].items() <= \
        routing_pods["metadata"]["labels"].items()


def test_prometheus_in_the_cluster_scrapes_every_pod_where_it_serves_its_metrics() -> None:
    """README: the pods carry `prometheus.io/scrape`, `port` and `path` annotations, which
    deploy/prometheus/prometheus.kubernetes.yml keeps and reads: scrape "true", the
    container's port, the path the services serve /metrics on."""
    [job] = load_yaml(PROMETHEUS / "prometheus.kubernetes.yml")["scrape_configs"]
    steps = {tuple(step.get("source_labels", [])): step for step in job["relabel_configs"]}
    scrape = steps[("__meta_kubernetes_pod_annotation_prometheus_io_scrape",)]
    address = steps[("__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port")]
    path = steps[("__meta_kubernetes_pod_annotation_prometheus_io_path",)]
    found = deployments(rendered_chart())
    assert set(found) == {*APP_SERVICES, ROUTER_STAGE_SERVICE}
    for name, deployment in found.items():
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert scrape["action"] == "keep", name
        assert re.fullmatch(scrape["regex"], annotations["prometheus.io/scrape"]), name
        # The pod's address as discovered (its first declared port), then as annotated.
        discovered = f"10.1.2.3:{container['ports'][0]['containerPort']}"
        joined = f"{discovered};{annotations['prometheus.io/port']}"
        target = re.fullmatch(address["regex"], joined)
        assert target, name
        assert target.expand(address["replacement"].replace("$", "\\")) == discovered, name
        served = re.fullmatch(path["regex"], annotations["prometheus.io/path"])
        assert served and path["target_label"] == "__metrics_path__", name
        assert served.group(1) == "/metrics", name


def test_readmes_kubectl_exec_names_the_routers_deployment() -> None:
    """README's first admin credential: `kubectl exec deploy/<the router's Deployment>`,
    as `helm install routing` names it."""
    name = deployments(rendered_chart())["router"]["metadata"]["name"]
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert f"`kubectl exec deploy/{name} -- routing credentials issue --role admin`" \
        in readme


def test_the_routing_table_and_segment_rules_are_mounted_read_only() -> None:
    """README: the ConfigMap is mounted read-only at /app/config, where the pods' settings
    find the routing table and the segment rules."""
    for name, deployment in deployments(rendered_chart()).items():
        pod = deployment["spec"]["template"]["spec"]
        [volume] = [v for v in pod["volumes"] if "configMap" in v]
        [mount] = [m for m in pod["containers"][0]["volumeMounts"]
                   if m["name"] == volume["name"]]
        assert (mount["mountPath"], mount.get("readOnly")) == ("/app/config", True), name

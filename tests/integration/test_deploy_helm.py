"""The Helm chart lints, renders manifests the Kubernetes schemas accept (kubeconform),
and its pods read their settings, probes, resources and secret as the code expects (its
Kafka security: test_deploy_helm_kafka.py)."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import make_url

from services.core import serve
from services.core.settings import Settings
from tests import kubernetes_schemas
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
from tests.integration.helm_chart import (
    CHART,
    KUBERNETES_VERSIONS,
    chart_values,
    container_env,
    deployments,
    expand,
    helm_template,
    kubeconform,
    manifests_of,
    program,
    rendered_chart,
    standalone_schemas,
)


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not kubernetes_schemas.SCHEMAS.is_dir():
        pytest.fail("no Kubernetes schemas; `bin/setup --test` installs them")
    return standalone_schemas(tmp_path_factory.mktemp("kubernetes-schemas"))


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
        # A process exiting (status 70: a stage ended for good) is started again.
        assert deployment["spec"]["template"]["spec"].get("restartPolicy", "Always") \
            == "Always", name
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
        manifests = manifests_of(result.stdout)
        annotations.append({name: d["spec"]["template"]["metadata"]["annotations"]
                            ["checksum/config"] for name, d in deployments(manifests).items()})
    before, after = annotations
    assert set(before) == {*APP_SERVICES, ROUTER_STAGE_SERVICE}
    assert all(before[name] != after[name] for name in before)


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


# What the chart sets to harden every pod and container, whoever picks the pods' ids.
POD_HARDENING = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_HARDENING = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                       "capabilities": {"drop": ["ALL"]}}
# The ids a platform such as OpenShift assigns and refuses a pod for setting otherwise.
POD_IDS = {"runAsUser", "runAsGroup", "fsGroup"}
PLATFORM_ASSIGNS_IDS = {"securityContext.platformAssignsIds": "true"}


def ids_set(node: object) -> set[str]:
    """The id fields set anywhere in a manifest (a pod's or a container's securityContext)."""
    if isinstance(node, dict):
        return (POD_IDS & set(node)).union(*(ids_set(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(ids_set(value) for value in node))
    return set()


def test_by_default_the_pods_run_as_the_images_user_and_group() -> None:
    """values.yaml: by default the pods run as the image's user and group, 10001, with
    fsGroup 10001 (the group of the files mounted from Secrets), hardened."""
    dockerfile = DOCKERFILE.read_text("utf-8")
    image_user = re.search(r"useradd .*--uid (\d+)", dockerfile)
    image_group = re.search(r"groupadd .*--gid (\d+)", dockerfile)
    assert image_user and image_group
    uid, gid = int(image_user.group(1)), int(image_group.group(1))
    assert (uid, gid) == (10001, 10001)  # as values.yaml and README say
    for name, deployment in deployments(rendered_chart()).items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"] == {**POD_HARDENING, "runAsUser": uid,
                                          "runAsGroup": gid, "fsGroup": gid}, name
        [container] = pod["containers"]
        assert container["securityContext"] == CONTAINER_HARDENING, name


def test_on_a_platform_that_assigns_ids_the_pods_set_none_and_stay_hardened(
        schemas: Path) -> None:
    """securityContext.platformAssignsIds: true (OpenShift's restricted-v2 SCC refuses a
    pod whose runAsUser or fsGroup lies outside the namespace's ranges, and assigns them
    when unset): no pod or container sets runAsUser, runAsGroup or fsGroup; every pod is
    as hardened as by default, its Secret files still 0440, and nothing else changes.
    The manifests pass kubeconform."""
    values = {"postgresql.password": "fixed-for-comparing",
              "kafka.securityProtocol": "SSL", "kafka.caSecret": "routing-kafka-ca",
              "kafka.clientCertificate.secret": "routing-kafka-client"}
    for version in KUBERNETES_VERSIONS:
        result = helm_template(*chart_values(**values, **PLATFORM_ASSIGNS_IDS),
                               "--kube-version", version)
        assert result.returncode == 0, result.stderr
        checked = kubeconform(result.stdout, version, schemas)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "Valid: 10, Invalid: 0, Errors: 0, Skipped: 0" in checked.stdout
    platform = manifests_of(result.stdout)
    assert not ids_set(platform)
    found = deployments(platform)
    assert set(found) == {*APP_SERVICES, ROUTER_STAGE_SERVICE}
    for name, deployment in found.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"] == POD_HARDENING, name
        [container] = pod["containers"]
        assert container["securityContext"] == CONTAINER_HARDENING, name
        modes = [v["secret"]["defaultMode"] for v in pod["volumes"] if "secret" in v]
        assert modes == [0o440, 0o440], name
    # The rest as by default: only the ids are left out.
    default = manifests_of(helm_template(*chart_values(**values), "--kube-version",
                                         KUBERNETES_VERSIONS[-1]).stdout)
    for deployment in deployments(default).values():
        security = deployment["spec"]["template"]["spec"]["securityContext"]
        for field in POD_IDS:
            del security[field]
    assert default == platform


def test_platform_assigns_ids_takes_true_or_false_only() -> None:
    for value in ("yes", "platform", "1"):
        refused = helm_template(*chart_values(**{"securityContext.platformAssignsIds": value}))
        assert refused.returncode != 0, value
        assert f"securityContext.platformAssignsIds: {value} is not true or false" \
            in refused.stderr


def test_the_root_filesystem_is_read_only_and_tmp_a_writable_empty_dir() -> None:
    """README: each container's root filesystem is read-only; /tmp is an emptyDir of its
    pod, writable, 64 MiB at most."""
    for platform in ({}, PLATFORM_ASSIGNS_IDS):
        for name, deployment in deployments(rendered_chart(**platform)).items():
            pod = deployment["spec"]["template"]["spec"]
            [container] = pod["containers"]
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
            [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert not mount.get("readOnly"), name
            [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
            assert volume == {"name": mount["name"], "emptyDir": {"sizeLimit": "64Mi"}}, name

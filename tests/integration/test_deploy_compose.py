"""docker-compose.yml and deploy/Dockerfile stay valid and in step with the settings
class: the app services' environment, ports, mounts and replicas, the image's user, the
demo profile and Kafka published for the walk-through."""

from __future__ import annotations

import re
import secrets
import socket
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from devtools import kafka_broker
from services.core import serve
from services.core.settings import Settings
from tests.integration.deploy_files import (
    APP_SERVICES,
    COMPOSE_FILE,
    DOCKERFILE,
    ROOT,
    ROUTER_STAGE_SERVICE,
    SETTINGS_ENV,
    bind_mount,
    compose_broker_agent,
    compose_services,
    environment,
    load_yaml,
    run,
    settings_of,
    tool,
)


def test_compose_file_passes_docker_compose_validation() -> None:
    """Docker Compose (the version `bin/setup --test` builds) takes the file without a
    warning: an obsolete or unknown attribute is warned about, not refused."""
    result = run(tool("docker-compose"), "-f", str(COMPOSE_FILE), "config", "-q")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_docker_compose_warns_of_an_obsolete_attribute(tmp_path: Path) -> None:
    """The check above means something: the file with the `version` Compose no longer
    reads draws a warning."""
    path = tmp_path / "docker-compose.yml"
    path.write_text('version: "3.8"\n' + COMPOSE_FILE.read_text(encoding="utf-8"),
                    encoding="utf-8")
    result = run(tool("docker-compose"), "-f", str(path), "--project-directory", str(ROOT),
                 "config", "-q")
    assert result.returncode == 0, result.stderr
    assert "version" in result.stderr and "obsolete" in result.stderr


def test_docker_compose_validation_rejects_a_broken_file(tmp_path: Path) -> None:
    """The check above means something: the same validator refuses an invalid service."""
    broken = load_yaml(COMPOSE_FILE)
    broken["services"]["router"]["ports"] = {"not": "a list"}
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    result = run(tool("docker-compose"), "-f", str(path), "--project-directory", str(ROOT),
                 "config", "-q")
    assert result.returncode != 0
    assert "ports" in result.stderr


def test_app_services_set_only_settings_fields() -> None:
    services = compose_services()
    for name in (*APP_SERVICES, ROUTER_STAGE_SERVICE):
        service = services[name]
        assert "env_file" not in service, f"{name}: keep the environment in docker-compose.yml"
        env = environment(service)
        assert env, f"{name} sets no environment"
        unknown = sorted(set(env) - SETTINGS_ENV)
        assert not unknown, f"{name} sets {unknown}, which Settings does not read"


def test_app_services_listen_on_all_interfaces_and_use_postgres(
        monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose_services()
    for name in (*APP_SERVICES, ROUTER_STAGE_SERVICE):
        settings = settings_of(services[name], monkeypatch)
        assert settings.host == "0.0.0.0", f"{name} would listen on {settings.host} only"
        assert settings.database_url.startswith("postgresql+asyncpg://"), name
        assert "@postgres:5432/" in settings.database_url, name
        assert settings.kafka_bootstrap_servers == "kafka:9092", name
        assert {"kafka", "postgres"} <= set(services[name]["depends_on"]), name


def test_app_services_publish_their_settings_port_on_loopback(
        monkeypatch: pytest.MonkeyPatch) -> None:
    services = compose_services()
    for name in APP_SERVICES:
        service = services[name]
        port = getattr(settings_of(service, monkeypatch), f"{name}_port")
        assert service["command"] == ["python", "-m", f"services.{name}"]
        assert [str(p) for p in service["ports"]] == [f"127.0.0.1:{port}:{port}"], name
        assert f"http://127.0.0.1:{port}/readyz" in " ".join(service["healthcheck"]["test"])


def test_app_services_read_the_mounted_config(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings.model_fields
    services = compose_services()
    for name in (*APP_SERVICES, ROUTER_STAGE_SERVICE):
        service = services[name]
        mounted, mode = bind_mount(service, "./config")
        assert mode == "ro", f"{name} may write to ./config"
        settings = settings_of(service, monkeypatch)
        for field in ("segment_rules_file", "routing_table_file"):
            path = getattr(settings, field)
            assert path.parent == Path(mounted), f"{name}: {path} is not under {mounted}"
            assert path.name == Path(str(defaults[field].default)).name, f"{name}: {path}"


def test_every_published_port_is_loopback_only() -> None:
    for name, service in compose_services().items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port}"


def dockerfile_final_stage() -> list[str]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.strip().startswith("#")]
    last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return lines[last_from:]


def test_dockerfile_image_runs_as_non_root_on_all_interfaces() -> None:
    stage = dockerfile_final_stage()
    assert stage[0].split()[1] == "python:3.11-slim"
    env: dict[str, str] = {}
    for line in stage:
        if line.upper().startswith("ENV "):
            for pair in line.split()[1:]:
                key, _, value = pair.partition("=")
                env[key] = value
    assert env.get("HOST") == "0.0.0.0"
    unknown = sorted(key for key in env if key not in SETTINGS_ENV
                     and key != "PATH" and not key.startswith(("PYTHON", "PIP_")))
    assert not unknown, f"the Dockerfile sets {unknown}, which Settings does not read"
    users = [line.split()[1] for line in stage if line.upper().startswith("USER ")]
    assert users, "the image runs as root"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_dockerfile_image_runs_as_a_user_the_platform_assigns_too() -> None:
    """The image's USER is its user and group by number (10001:10001), so that the
    kubelet can check runAsNonRoot in a pod that sets no runAsUser (the Helm chart's
    securityContext.platformAssignsIds); the directory of its SQLite store, the one it
    writes, belongs to group 0 and is group-writable, for a user the platform picks, whom
    OpenShift runs in group 0."""
    stage = dockerfile_final_stage()
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    image_user = re.search(r"useradd .*--uid (\d+)", dockerfile)
    image_group = re.search(r"groupadd .*--gid (\d+)", dockerfile)
    assert image_user and image_group
    users = [line.split()[1] for line in stage if line.upper().startswith("USER ")]
    assert users[-1] == f"{image_user.group(1)}:{image_group.group(1)}" != "0:0"
    [url] = [pair.partition("=")[2] for line in stage if line.upper().startswith("ENV ")
             for pair in line.split()[1:] if pair.startswith("DATABASE_URL=")]
    store = str(Path(make_url(url).database or "").parent)
    commands = " && ".join(line[4:] for line in stage if line.upper().startswith("RUN "))
    owners = [match.group(1) for match in
              re.finditer(rf"chown\s+\S+:(\S+)\s+[^&;]*?{re.escape(store)}\b", commands)]
    modes = [int(match.group(1), 8) for match in
             re.finditer(rf"chmod\s+([0-7]{{3,4}})\s+[^&;]*?{re.escape(store)}\b", commands)]
    assert owners and owners[-1] in {"0", "root"}, commands
    assert modes and modes[-1] & 0o070 == 0o070, commands


def test_dockerfile_sources_are_not_docker_ignored() -> None:
    copied = {"pyproject.toml", "README.md", "services", "config"}
    text = DOCKERFILE.read_text(encoding="utf-8")
    for source in copied:
        assert re.search(rf"^COPY\s.*\b{re.escape(source)}\b", text, re.MULTILINE), source
    ignored = {line.strip().rstrip("/") for line in
               (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()}
    assert not copied & ignored
    assert {".venv", ".git", ".cache", ".data"} <= ignored


# Each stage's unpublished replica service, and the service it copies: the router's
# replicas route, as router-stage does.
REPLICAS = {f"{name}-replica": name for name in APP_SERVICES} | {
    "router-replica": ROUTER_STAGE_SERVICE}


def rendered_compose(*options: str) -> dict[str, Any]:
    """The file as Docker Compose resolves it (anchors, merges, profiles)."""
    result = run(tool("docker-compose"), "-f", str(COMPOSE_FILE), *options, "config")
    assert result.returncode == 0, result.stderr
    rendered: dict[str, Any] = yaml.safe_load(result.stdout)
    return rendered


def test_each_stage_has_an_unpublished_replica_service() -> None:
    services = rendered_compose()["services"]
    for replica, name in REPLICAS.items():
        same = ("command", "environment", "healthcheck", "image", "depends_on", "volumes")
        assert {key: services[replica].get(key) for key in same} == {
            key: services[name].get(key) for key in same}, replica
        assert "ports" not in services[replica], f"{replica} would clash on the host port"
        assert services[replica]["deploy"]["replicas"] == 0, "none unless scaled"


def test_every_replica_gets_its_own_instance_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """INSTANCE_ID=auto takes the container's host name, which Docker makes from the
    container's id unless the file fixes it; every container of every stage differs."""
    services = rendered_compose()["services"]
    containers = 0
    ids: dict[str, set[str]] = {}
    for name in [*APP_SERVICES, ROUTER_STAGE_SERVICE, *REPLICAS]:
        service = services[name]
        assert "hostname" not in service and "container_name" not in service, name
        assert environment(service)["INSTANCE_ID"] == "auto", name
        stage = REPLICAS.get(name, name)
        for _ in range(3):  # as if scaled to 3
            container_id = secrets.token_hex(32)
            monkeypatch.setattr(socket, "gethostname", lambda cid=container_id: cid[:12])
            ids.setdefault(stage, set()).add(settings_of(service, monkeypatch).instance_id)
            containers += 1
    assert sum(len(found) for found in ids.values()) == containers


def test_the_intake_and_the_routing_stage_run_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """The published router serves the intake and the APIs only; router-stage, the same
    program otherwise set alike, routes (as bin/run's two router processes do)."""
    services = rendered_compose()["services"]
    intake, routing = services["router"], services[ROUTER_STAGE_SERVICE]
    assert settings_of(intake, monkeypatch).router_stage is False
    assert settings_of(routing, monkeypatch).router_stage is True
    def others(service: dict[str, Any]) -> dict[str, str | None]:
        return {key: value for key, value in environment(service).items()
                if key != "ROUTER_STAGE"}
    assert others(routing) == others(intake)
    same = ("command", "healthcheck", "image", "depends_on", "volumes")
    assert {key: routing.get(key) for key in same} == {key: intake.get(key) for key in same}
    assert "ports" not in routing, "its port would clash with the intake's on the host"


def test_kafka_is_published_where_the_walk_through_reads_it() -> None:
    kafka = compose_services()["kafka"]
    env = environment(kafka)
    advertised = dict(listener.split("://") for listener in
                      (env["KAFKA_ADVERTISED_LISTENERS"] or "").split(","))
    host_listener = advertised["HOST"]
    listening = dict(listener.split("://") for listener in
                     (env["KAFKA_LISTENERS"] or "").split(","))
    container_port = listening["HOST"].rsplit(":", 1)[1]
    assert kafka["ports"] == [f"{host_listener}:{container_port}"]
    # The address bin/run's broker has, the settings' default and the README's kcat line.
    assert host_listener == Settings.model_fields["kafka_bootstrap_servers"].default
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"kcat -b {host_listener} " in readme


def test_the_demo_profile_seeds_the_walk_through() -> None:
    default = rendered_compose()["services"]
    demo = rendered_compose("--profile", "demo")["services"]["demo"]
    assert "demo" not in default  # only with --profile demo
    assert load_yaml(COMPOSE_FILE)["services"]["demo"]["profiles"] == ["demo"]
    assert demo["command"][:3] == ["python", "-m", "devtools.demo_seed"]
    credentials = Path(demo["command"][3])
    # Compose renders each mount in its long form: (source, read-only) by target.
    mounts = {Path(volume["target"]): (volume["source"], volume.get("read_only", False))
              for volume in demo["volumes"] if volume["type"] == "bind"}
    assert mounts[credentials.parent] == (str(ROOT / ".data"), False)
    # It reads the routing table (the departments' tokens) from the read-only mount and
    # hands the file to that mount's owner.
    assert mounts[Path("/app/config")] == (str(ROOT / "config"), True)
    # The image holds no dev tooling: the demo runs the checkout's devtools/, mounted.
    assert mounts[Path("/app/devtools")] == (str(ROOT / "devtools"), True)
    assert demo["command"][4:] == ["--owner-of", "/app/config"]
    assert demo["restart"] == "no"
    assert set(demo["depends_on"]) == {"postgres"}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert credentials.relative_to("/app").as_posix() == ".data/credentials.env"
    assert "source .data/credentials.env" in readme


def test_every_service_of_ours_gets_the_time_it_takes_to_stop() -> None:
    """Compose kills a container 10 s after SIGTERM unless told otherwise: a stage
    finishing its batch in hand would be cut off (services/core/serve.py)."""
    services = rendered_compose()["services"]
    for name in [*APP_SERVICES, ROUTER_STAGE_SERVICE]:
        for service in (name, f"{name}-replica"):
            if service in services:
                assert seconds(services[service]["stop_grace_period"]) == \
                    serve.STOP_GRACE_SECONDS, service


def test_every_service_of_ours_is_restarted_when_it_exits() -> None:
    """README: a service whose stage ended for good exits (status 70) to be restarted
    (services/core/service_context.py, STAGE_ENDED_EXIT): Compose restarts it."""
    services = rendered_compose()["services"]
    for name in [*APP_SERVICES, ROUTER_STAGE_SERVICE]:
        for service in (name, f"{name}-replica"):
            if service in services:
                assert services[service]["restart"] == "unless-stopped", service


def seconds(duration: str) -> int:
    """A duration as Compose renders it (`1m0s`)."""
    found = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert found and duration, duration
    hours, minutes, secs = (int(part or 0) for part in found.groups())
    return 3600 * hours + 60 * minutes + secs


def test_the_broker_in_compose_is_the_one_the_tests_run() -> None:
    """One Kafka version: the pom's, which bin/run and the tests start (README says why
    some releases must not be used)."""
    image = compose_services()["kafka"]["image"]
    assert image == f"apache/kafka:{kafka_broker.kafka_version()}"


def test_the_broker_runs_the_jmx_exporter_agent_its_pom_names() -> None:
    """The broker's KAFKA_OPTS loads the Prometheus JMX exporter's agent, with
    deploy/kafka/jmx-exporter.yml, from the volume the one-shot `kafka-agent` fills from
    deploy/kafka/pom.xml (the pom of the tests' broker: one version), before the broker
    starts; its port is Prometheus's target (test_deploy_prometheus.py), not published.
    The healthcheck's Kafka tool runs without KAFKA_OPTS: its own agent could not bind
    the broker's port, and the tool would not start."""
    services = rendered_compose()["services"]
    kafka, fetch = services["kafka"], services["kafka-agent"]
    agent = compose_broker_agent()
    mounts = {volume["target"]: volume for volume in kafka["volumes"]}
    fetched = {volume["target"]: volume for volume in fetch["volumes"]}
    command = fetch["command"]
    output = next(arg.split("=", 1)[1] for arg in command
                  if arg.startswith("-DoutputDirectory="))
    jar = PurePosixPath(agent.jar)
    assert (mounts[str(jar.parent)]["type"], mounts[str(jar.parent)]["read_only"]) == (
        "volume", True)
    assert fetched[output]["source"] == mounts[str(jar.parent)]["source"]
    assert fetched[command[command.index("-f") + 1]]["source"] == str(kafka_broker.POM)
    assert command[command.index("-f") + 2] == "dependency:copy-dependencies"
    assert "<artifactId>jmx_prometheus_javaagent</artifactId>" in kafka_broker.POM.read_text(
        encoding="utf-8")
    assert "-DincludeArtifactIds=jmx_prometheus_javaagent" in command
    assert "-Dmdep.stripVersion=true" in command and jar.name == "jmx_prometheus_javaagent.jar"
    assert (mounts[agent.config]["source"], mounts[agent.config]["read_only"]) == (
        str(kafka_broker.EXPORTER_CONFIG), True)
    assert kafka["depends_on"]["kafka-agent"]["condition"] == "service_completed_successfully"
    assert agent.port not in {port["target"] for port in kafka["ports"]}
    assert kafka["healthcheck"]["test"][1].startswith("KAFKA_OPTS= /opt/kafka/bin/")
    assert "kafka" in services["prometheus"]["depends_on"]


def test_grafanas_admin_password_is_the_one_the_environment_gives(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """README: `GRAFANA_ADMIN_PASSWORD`, `admin` when unset."""
    chosen = secrets.token_urlsafe(12)
    monkeypatch.setenv("GRAFANA_ADMIN_PASSWORD", chosen)
    grafana = rendered_compose()["services"]["grafana"]
    assert environment(grafana)["GF_SECURITY_ADMIN_PASSWORD"] == chosen
    monkeypatch.delenv("GRAFANA_ADMIN_PASSWORD")
    grafana = rendered_compose()["services"]["grafana"]
    assert environment(grafana)["GF_SECURITY_ADMIN_PASSWORD"] == "admin"


def test_alertmanagers_secrets_beside_its_configuration_are_never_committed() -> None:
    """README: receivers' secrets go in deploy/alertmanager/secrets/, mounted with the
    configuration, and git ignores that folder."""
    alertmanager = compose_services()["alertmanager"]
    assert "./deploy/alertmanager:/etc/alertmanager:ro" in alertmanager["volumes"]
    configuration = (ROOT / "deploy" / "alertmanager" / "alertmanager.yml").read_text("utf-8")
    assert "/etc/alertmanager/secrets/" in configuration
    ignored = run("git", "-C", str(ROOT), "check-ignore", "-q",
                  "deploy/alertmanager/secrets/slack-webhook-url")
    assert ignored.returncode == 0, "git would commit a receiver's secret"


def test_alertmanager_reads_its_secrets_as_the_user_readme_says_to_give_them() -> None:
    """README: Alertmanager reads the mounted secrets as its image's user, `nobody` (uid
    65534 in prom/alertmanager), not the checkout's owner, so a secret readable by its
    owner alone must be given to 65534: compose must not set another user, nor run
    another image, or README's commands would hide the secrets from it."""
    alertmanager = compose_services()["alertmanager"]
    assert alertmanager["image"].startswith("prom/alertmanager:")
    assert "user" not in alertmanager
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert "`nobody` (uid 65534 in `prom/alertmanager`" in readme
    assert "sudo chown -R 65534 deploy/alertmanager/secrets" in readme


def test_readme_names_the_compose_that_validates_the_file() -> None:
    version = run(tool("docker-compose"), "version", "--short").stdout.strip()
    assert re.fullmatch(r"v?\d+\.\d+\.\d+", version), version
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert f"Docker Compose's own `config` (v{version.removeprefix('v')}," in readme


def test_the_walk_throughs_other_addresses_and_the_partition_count_readme_gives(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """README, Running with Docker: Prometheus on :9090, Grafana on :3000 (Alertmanager's
    :9093, test_deploy_alerts.py); KAFKA_TOPIC_PARTITIONS 3 here, the most instances of
    one stage that do work."""
    services = compose_services()
    assert services["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]
    assert services["grafana"]["ports"] == ["127.0.0.1:3000:3000"]
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    assert "Prometheus on :9090, Grafana on :3000" in readme
    assert "`KAFKA_TOPIC_PARTITIONS` (3 here)" in readme
    rendered = rendered_compose()["services"]
    for name in [*APP_SERVICES, ROUTER_STAGE_SERVICE, *REPLICAS]:
        assert settings_of(rendered[name], monkeypatch).kafka_topic_partitions == 3, name

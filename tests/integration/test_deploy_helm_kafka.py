"""The Helm chart's Kafka security: each service's SASL user and its password from a
Secret, the brokers' CA and the client certificate (mutual TLS) mounted from Secrets, the
host-name check; the pods' settings read all of it, and values that cannot work do not
render (README "Running on Kubernetes", docs/kafka-security.md)."""

from __future__ import annotations

import re
import stat
import typing
from pathlib import Path

import pytest

from devtools import certificates
from services.core import kafka
from services.core.settings import Settings
from tests import kafka_acls, kubernetes_schemas
from tests.integration.deploy_files import (
    APP_SERVICES,
    DOCKERFILE,
    ROUTER_STAGE_SERVICE,
    SETTINGS_ENV,
    load_yaml,
    settings_of,
)
from tests.integration.helm_chart import (
    CHART,
    KUBERNETES_VERSIONS,
    chart_values,
    container_env,
    deployments,
    helm_template,
    kubeconform,
    manifests_of,
    pod_environment,
    program,
    rendered_chart,
    standalone_schemas,
)

CLIENT_CERTIFICATE = {"kafka.clientCertificate.secret": "routing-kafka-client",
                      "kafka.clientCertificate.certificateKey": "client.crt",
                      "kafka.clientCertificate.privateKeyKey": "client.key"}


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not kubernetes_schemas.SCHEMAS.is_dir():
        pytest.fail("no Kubernetes schemas; `bin/setup --test` installs them")
    return standalone_schemas(tmp_path_factory.mktemp("kubernetes-schemas"))


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A CA and a certificate it signed with that certificate's key, as PEM text: what an
    operator's Secrets hold (the broker certificate stands in for a client's)."""
    made = certificates.generate(tmp_path_factory.mktemp("tls"))
    return {"ca": made.ca.read_text("utf-8"),
            "certificate": made.ca.with_name("broker.crt").read_text("utf-8"),
            "key": made.ca.with_name("broker.key").read_text("utf-8")}


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
    for name, deployment in deployments(manifests_of(result.stdout)).items():
        variables = {variable["name"]: variable for variable in container_env(deployment)}
        user = variables["KAFKA_SASL_USERNAME"]["value"]
        assert user == program(name) and hasattr(kafka_acls, user), name
        assert variables["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "routing-kafka", "key": user}
        pod = deployment["spec"]["template"]["spec"]
        mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
        [volume] = [v for v in pod["volumes"] if v["name"] == "kafka-ca"]
        assert volume["secret"] == {"secretName": "routing-kafka-ca", "defaultMode": 0o440,
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


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_pods_present_the_client_certificate_from_its_secret(
        protocol: str, tls_files: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path, schemas: Path) -> None:
    """Mutual TLS: every pod mounts kafka.clientCertificate.secret read-only, the
    certificate and the key under the Secret's keys the values name, and its settings
    read those files: the TLS context every Kafka client is built with loads them (a
    variable the settings do not read, or a key that is not the certificate's, fails)."""
    values = {"kafka.securityProtocol": protocol, "kafka.caSecret": "routing-kafka-ca",
              **CLIENT_CERTIFICATE}
    if protocol == "SASL_SSL":
        values["kafka.saslSecret"] = "routing-kafka"
    version = KUBERNETES_VERSIONS[-1]
    result = helm_template(*chart_values(**values), "--kube-version", version)
    assert result.returncode == 0, result.stderr
    checked = kubeconform(result.stdout, version, schemas)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Valid: 10, Invalid: 0, Errors: 0, Skipped: 0" in checked.stdout
    manifests = manifests_of(result.stdout)
    secrets = {m["metadata"]["name"]: m["stringData"] for m in manifests
               if m["kind"] == "Secret"}
    secrets |= {"routing-kafka-client": {"client.crt": tls_files["certificate"],
                                         "client.key": tls_files["key"]},
                "routing-kafka-ca": {"ca.crt": tls_files["ca"]},
                "routing-kafka": {user: "secret" for user in ("router", "segmenter",
                                                              "metrics")}}
    found = deployments(manifests)
    assert set(found) == {*APP_SERVICES, ROUTER_STAGE_SERVICE}
    for name, deployment in found.items():
        pod = deployment["spec"]["template"]["spec"]
        [volume] = [v for v in pod["volumes"]
                    if v.get("secret", {}).get("secretName") == "routing-kafka-client"]
        [mount] = [m for m in pod["containers"][0]["volumeMounts"]
                   if m["name"] == volume["name"]]
        assert mount["readOnly"] is True, name
        env = pod_environment(deployment, secrets, tmp_path / name)
        assert set(env) <= SETTINGS_ENV, name
        settings = settings_of({"environment": env}, monkeypatch)
        assert settings.kafka_ssl_certfile and settings.kafka_ssl_keyfile, name
        assert settings.kafka_ssl_certfile.read_text("utf-8") == tls_files["certificate"]
        assert settings.kafka_ssl_keyfile.read_text("utf-8") == tls_files["key"]
        assert settings.kafka_ssl_cafile and \
            settings.kafka_ssl_cafile.read_text("utf-8") == tls_files["ca"]
        assert settings.kafka_ssl_check_hostname is True, name
        options = kafka.connection_options(settings)
        assert options["security_protocol"] == protocol
        assert options["ssl_context"].check_hostname is True


def readable(mode: int, *, owner: int, group: int, uid: int, gids: set[int]) -> bool:
    """Whether a process of `uid` in the groups `gids` may read a file of `owner` and
    `group` with `mode` (not root: the pods run as non-root)."""
    if uid == owner:
        return bool(mode & stat.S_IRUSR)
    if group in gids:
        return bool(mode & stat.S_IRGRP)
    return bool(mode & stat.S_IROTH)


# What OpenShift's restricted-v2 SCC gives a pod that sets no ids (as the chart does with
# securityContext.platformAssignsIds): the first uid and the first group of the
# namespace's ranges (openshift.io/sa.scc.uid-range, .supplemental-groups, such as
# 1000680000/10000) as runAsUser and fsGroup; the process's own group is 0, the image's
# having no entry for that uid.
PLATFORM_ASSIGNED = {"runAsUser": 1000680000, "fsGroup": 1000680000}
PLATFORM_PROCESS_GROUP = 0


@pytest.mark.parametrize("platform_assigns_ids", [False, True],
                         ids=["image-ids", "platform-ids"])
def test_the_client_key_is_read_by_the_services_user_and_group_only(
        platform_assigns_ids: bool, tls_files: dict[str, str],
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, schemas: Path) -> None:
    """Every file the pods mount from a Secret, the client certificate's private key among
    them, has mode 0440 where Kubernetes' default (0644) lets any user of the container
    read it; the pods' fsGroup, which the kubelet makes those files' group (their owner
    is root), is the services' group, so the services (the image's user and group,
    10001) still read them and no other user does. Where the platform assigns the ids
    (securityContext.platformAssignsIds), the chart sets none and the fsGroup the
    platform gives the pod is those files' group and one of the pod's: its arbitrary
    user reads them, another user in group 0 does not. The manifests pass kubeconform."""
    values = {"kafka.securityProtocol": "SSL", "kafka.caSecret": "routing-kafka-ca",
              "securityContext.platformAssignsIds": str(platform_assigns_ids).lower(),
              **CLIENT_CERTIFICATE}
    version = KUBERNETES_VERSIONS[-1]
    result = helm_template(*chart_values(**values), "--kube-version", version)
    assert result.returncode == 0, result.stderr
    checked = kubeconform(result.stdout, version, schemas)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    image_user = re.search(r"--uid (\d+)", DOCKERFILE.read_text("utf-8"))
    image_group = re.search(r"groupadd .*--gid (\d+)", DOCKERFILE.read_text("utf-8"))
    assert image_user and image_group
    manifests = manifests_of(result.stdout)
    secrets = {m["metadata"]["name"]: m["stringData"] for m in manifests
               if m["kind"] == "Secret"}
    secrets |= {"routing-kafka-client": {"client.crt": tls_files["certificate"],
                                         "client.key": tls_files["key"]},
                "routing-kafka-ca": {"ca.crt": tls_files["ca"]}}
    found = deployments(manifests)
    assert set(found) == {*APP_SERVICES, ROUTER_STAGE_SERVICE}
    for name, deployment in found.items():
        pod = deployment["spec"]["template"]["spec"]
        security = pod["securityContext"]
        if platform_assigns_ids:
            assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(security), name
            uid, fs_group = PLATFORM_ASSIGNED["runAsUser"], PLATFORM_ASSIGNED["fsGroup"]
            gids = {PLATFORM_PROCESS_GROUP, fs_group}
        else:
            assert (security["runAsUser"], security["runAsGroup"], security["fsGroup"]) \
                == (int(image_user.group(1)), int(image_group.group(1)),
                    int(image_group.group(1))), name
            uid, fs_group = security["runAsUser"], security["fsGroup"]
            gids = {security["runAsGroup"], fs_group}
        assert {v["name"] for v in pod["volumes"] if "secret" in v} \
            == {"kafka-ca", "kafka-client-certificate"}, name
        settings = settings_of({"environment": pod_environment(
            deployment, secrets, tmp_path / name)}, monkeypatch)
        for file in (settings.kafka_ssl_keyfile, settings.kafka_ssl_certfile,
                     settings.kafka_ssl_cafile):
            assert file, name
            mode = stat.S_IMODE(file.stat().st_mode)
            assert mode == 0o440, (name, file.name, oct(mode))
            # The kubelet's files: owner root, group the pod's fsGroup.
            files = {"owner": 0, "group": fs_group}
            assert readable(mode, **files, uid=uid, gids=gids), name
            assert not readable(mode, **files, uid=uid + 1,
                                gids=gids - {fs_group} | {PLATFORM_PROCESS_GROUP}), name
        assert settings.kafka_ssl_keyfile.read_text("utf-8") == tls_files["key"], name


def test_secret_names_and_keys_that_read_as_numbers_or_booleans_stay_text(
        tls_files: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        schemas: Path) -> None:
    """Secrets named `2023` (SASL), `2024` (CA), `2025` (client certificate), the
    certificate under the key `1` and its key under `true` (names Kubernetes takes) render
    as those names, not as a number or a boolean the API server would refuse: the pods
    still read what they name."""
    values = {"kafka.securityProtocol": "SASL_SSL", "kafka.saslSecret": "2023",
              "kafka.caSecret": "2024",
              "kafka.clientCertificate.secret": "2025",
              "kafka.clientCertificate.certificateKey": "1",
              "kafka.clientCertificate.privateKeyKey": "true"}
    version = KUBERNETES_VERSIONS[-1]
    result = helm_template(*chart_values(**values), "--kube-version", version)
    assert result.returncode == 0, result.stderr
    checked = kubeconform(result.stdout, version, schemas)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    manifests = manifests_of(result.stdout)
    secrets = {m["metadata"]["name"]: m["stringData"] for m in manifests
               if m["kind"] == "Secret"}
    secrets |= {"2025": {"1": tls_files["certificate"], "true": tls_files["key"]},
                "2024": {"ca.crt": tls_files["ca"]},
                "2023": {user: "secret" for user in ("router", "segmenter", "metrics")}}
    for name, deployment in deployments(manifests).items():
        env = pod_environment(deployment, secrets, tmp_path / name)
        settings = settings_of({"environment": env}, monkeypatch)
        assert settings.kafka_ssl_keyfile and \
            settings.kafka_ssl_keyfile.read_text("utf-8") == tls_files["key"], name
        assert settings.kafka_ssl_cafile and \
            settings.kafka_ssl_cafile.read_text("utf-8") == tls_files["ca"], name
        assert settings.kafka_sasl_password is not None, name


@pytest.mark.parametrize("check", [True, False])
def test_the_host_name_check_reaches_its_setting(
        check: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    manifests = rendered_chart(**{"kafka.securityProtocol": "SSL",
                                  "kafka.sslCheckHostname": str(check).lower()})
    secrets = {m["metadata"]["name"]: m["stringData"] for m in manifests
               if m["kind"] == "Secret"}
    for name, deployment in deployments(manifests).items():
        env = pod_environment(deployment, secrets, tmp_path / name)
        assert set(env) <= SETTINGS_ENV, name
        settings = settings_of({"environment": env}, monkeypatch)
        assert settings.kafka_ssl_check_hostname is check, name
        assert kafka.connection_options(settings)["ssl_context"].check_hostname is check


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL"])
def test_by_default_no_client_certificate_and_the_host_name_checked(protocol: str) -> None:
    """The new values' defaults change nothing: no client certificate mounted, no TLS
    variable set, so the settings' defaults hold, the chart's `true` being the setting's."""
    kafka_values = load_yaml(CHART / "values.yaml")["kafka"]
    assert kafka_values["clientCertificate"]["secret"] == ""
    assert kafka_values["sslCheckHostname"] \
        is Settings.model_fields["kafka_ssl_check_hostname"].default is True
    for name, deployment in deployments(
            rendered_chart(**{"kafka.securityProtocol": protocol})).items():
        pod = deployment["spec"]["template"]["spec"]
        assert not [v for v in pod["volumes"] if "secret" in v], name
        assert not [v for v in container_env(deployment)
                    if v["name"].startswith("KAFKA_SSL_")], name


@pytest.mark.parametrize("emptied", ["certificateKey", "privateKeyKey"])
def test_a_client_certificate_without_its_key_is_refused(emptied: str) -> None:
    """A certificate without its key, or a key without its certificate, does not render,
    naming the value left empty."""
    refused = helm_template(*chart_values(**{
        "kafka.securityProtocol": "SSL", **CLIENT_CERTIFICATE,
        f"kafka.clientCertificate.{emptied}": ""}))
    assert refused.returncode != 0
    assert f"kafka.clientCertificate: {emptied} is empty" in refused.stderr
    assert not refused.stdout


@pytest.mark.parametrize(("values", "named"), [
    ({"kafka.securityProtocol": "SASL_SSL"}, "kafka.saslSecret"),
    ({"kafka.caSecret": "routing-kafka-ca"}, "kafka.caSecret"),
    ({"kafka.securityProtocol": "TLS"}, "kafka.securityProtocol"),
    ({"kafka.securityProtocol": "SASL_SSL", "kafka.saslSecret": "routing-kafka",
      "kafka.saslMechanism": "SCRAM-SHA512"}, "kafka.saslMechanism"),
    (CLIENT_CERTIFICATE, "kafka.clientCertificate.secret"),
    ({"kafka.sslCheckHostname": "false"}, "kafka.sslCheckHostname"),
    ({"kafka.securityProtocol": "SSL", "kafka.sslCheckHostname": "no"},
     "kafka.sslCheckHostname")])
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

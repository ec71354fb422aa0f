"""The Helm chart's Kafka security: each service's SASL user and its password from a
Secret, the brokers' CA mounted from another; values that cannot work do not render
(README "Running on Kubernetes", docs/kafka-security.md)."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest

from services.core.settings import Settings
from tests import kafka_acls, kubernetes_schemas
from tests.integration.deploy_files import settings_of
from tests.integration.helm_chart import (
    KUBERNETES_VERSIONS,
    chart_values,
    container_env,
    deployments,
    helm_template,
    kubeconform,
    manifests_of,
    program,
    standalone_schemas,
)


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not kubernetes_schemas.SCHEMAS.is_dir():
        pytest.fail("no Kubernetes schemas; `bin/setup --test` installs them")
    return standalone_schemas(tmp_path_factory.mktemp("kubernetes-schemas"))


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

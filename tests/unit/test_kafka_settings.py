"""Kafka security settings: defaults stay PLAINTEXT, nonsense is refused by name."""

from __future__ import annotations

import ssl
from pathlib import Path

import pydantic
import pytest

from devtools import certificates
from services.core import kafka
from services.core.settings import Settings


class TestDefaults:
    def test_plaintext_without_credentials(self) -> None:
        options = kafka.connection_options(Settings(kafka_bootstrap_servers="k:9092"))
        assert options == {"bootstrap_servers": "k:9092", "security_protocol": "PLAINTEXT"}


class TestRefused:
    @pytest.mark.parametrize(("given", "named"), [
        ({"kafka_security_protocol": "SASL_SSL"}, "KAFKA_SASL_USERNAME"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "u"},
         "KAFKA_SASL_PASSWORD"),
        ({"kafka_sasl_username": "u", "kafka_sasl_password": "p"}, "KAFKA_SECURITY_PROTOCOL"),
    ])
    def test_a_bad_combination_names_the_variable(self, given: dict[str, str],
                                                  named: str) -> None:
        with pytest.raises(pydantic.ValidationError, match=named):
            Settings(**given)

    def test_certificates_without_tls(self, tmp_path: Path) -> None:
        ca = tmp_path / "ca.pem"
        ca.write_text("")
        with pytest.raises(pydantic.ValidationError, match="KAFKA_SSL_CAFILE"):
            Settings(kafka_ssl_cafile=ca)

    def test_the_password_is_not_echoed(self) -> None:
        with pytest.raises(pydantic.ValidationError) as refused:
            Settings(kafka_sasl_username="u", kafka_sasl_password="hunter2-secret")
        assert "hunter2-secret" not in str(refused.value)


class TestBootstrapServers:
    @pytest.mark.parametrize("servers", [
        "kafka:9092", "kafka", "kafka-1:9092, kafka-2:9092", "10.0.0.7:9093", "[::1]:9092",
        "::1", "[fd00::7]"])
    def test_addresses_as_kafka_reads_them(self, servers: str) -> None:
        assert Settings(kafka_bootstrap_servers=servers).kafka_bootstrap_servers == servers

    @pytest.mark.parametrize(("servers", "said"), [
        ("kafka:abc", "it has a port that is not a number from 1 to 65535"),
        ("kafka:9092:1", "it has a ':' too many"),
        ("kafka:0", "it has a port that is not a number"),
        ("kafka:", "it has a port that is not a number"),
        (":9092", "it has no host"),
        ("kafka 1:9092", "it has no host, or one with spaces"),
        ("[::1:9092", "it has a [ without its ]"),
        ("", "it is empty"),
        ("kafka-1:9092,", "entry 2 of 2 is empty"),
    ])
    def test_anything_else_is_refused_saying_what_it_takes(self, servers: str,
                                                           said: str) -> None:
        """Else aiokafka would raise a ValueError of its own (a traceback) at every
        client it builds, or look a blank name up for ever (an outage waited out)."""
        with pytest.raises(pydantic.ValidationError) as refused:
            Settings(kafka_bootstrap_servers=servers)
        [problem] = refused.value.errors()
        assert problem["loc"] == ("kafka_bootstrap_servers",)
        assert said in problem["msg"] and "host:port" in problem["msg"]


class TestSasl:
    def test_scram_options(self) -> None:
        options = kafka.connection_options(Settings(
            kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="router",
            kafka_sasl_password="pw"))
        assert options["sasl_mechanism"] == "SCRAM-SHA-512"
        assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
            "router", "pw")
        assert "ssl_context" not in options


class TestMutualTls:
    """A client certificate (KAFKA_SSL_CERTFILE with its KAFKA_SSL_KEYFILE) goes into the
    TLS context every client is built with; a key without its certificate is refused."""

    def test_a_key_without_its_certificate_is_refused(self, tmp_path: Path) -> None:
        made = certificates.generate(tmp_path)
        with pytest.raises(pydantic.ValidationError,
                           match="KAFKA_SSL_KEYFILE is set without KAFKA_SSL_CERTFILE"):
            Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=made.ca,
                     kafka_ssl_keyfile=tmp_path / "broker.key")

    def test_the_client_certificate_and_hostname_check_reach_the_context(
            self, tmp_path: Path) -> None:
        made = certificates.generate(tmp_path)
        settings = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=made.ca,
                            kafka_ssl_certfile=tmp_path / "broker.crt",
                            kafka_ssl_keyfile=tmp_path / "broker.key",
                            kafka_ssl_check_hostname=False)
        context = kafka.connection_options(settings)["ssl_context"]
        assert context.check_hostname is False
        assert [c["subject"] for c in context.get_ca_certs()] == [
            ((("commonName", "routing-local-ca"),),)]
        # The certificate is loaded with its key (the file holds no key, so without the
        # key file the context above could not be built), and another's key is refused.
        certificates.generate(tmp_path / "other")
        with pytest.raises(ssl.SSLError):
            kafka.connection_options(settings.model_copy(
                update={"kafka_ssl_keyfile": tmp_path / "other" / "broker.key"}))

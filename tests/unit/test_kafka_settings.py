"""Kafka security settings: defaults stay PLAINTEXT, nonsense is refused by name."""

from __future__ import annotations

import ast
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

    def test_tls_trusts_the_systems_cas_and_checks_the_host_name(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """docs/kafka-security.md: without KAFKA_SSL_CAFILE the system's CAs verify the
        brokers (here OpenSSL's SSL_CERT_FILE names them), and KAFKA_SSL_CHECK_HOSTNAME
        is true: the broker's certificate must name the host."""
        made = certificates.generate(tmp_path)
        monkeypatch.setenv("SSL_CERT_FILE", str(made.ca))
        monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "no-folder"))
        context = kafka.connection_options(Settings(kafka_security_protocol="SSL"))[
            "ssl_context"]
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.check_hostname is True
        assert [c["subject"] for c in context.get_ca_certs()] == [
            ((("commonName", "routing-local-ca"),),)]


SERVICES = Path(kafka.__file__).resolve().parents[1]
# What makes a Kafka client, or a connection to a broker (kafka.reached's).
CLIENTS = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient", "Producer",
           "Consumer", "create_conn"}


def _called(call: ast.Call) -> str | None:
    function = call.func
    return function.id if isinstance(function, ast.Name) else \
        function.attr if isinstance(function, ast.Attribute) else None


class TestOneWayToConnect:
    """docs/kafka-security.md: every Kafka client of every service is built from
    kafka.connection_options(settings), so one set of variables secures them all."""

    def test_no_service_module_but_kafka_builds_a_client(self) -> None:
        builders = {path.relative_to(SERVICES).as_posix()
                    for path in SERVICES.rglob("*.py")
                    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                    if isinstance(node, ast.Call) and _called(node) in CLIENTS}
        assert builders == {"core/kafka.py"}

    def test_every_client_kafka_builds_takes_the_connection_options(self) -> None:
        source = ast.parse(Path(kafka.__file__).read_text(encoding="utf-8"))
        built = 0
        for function in ast.walk(source):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            # A name given connection_options(...) in this function (kafka.reached's).
            options = {target.id for node in ast.walk(function)
                       if isinstance(node, ast.Assign)
                       and isinstance(node.value, ast.Call)
                       and _called(node.value) == "connection_options"
                       for target in node.targets if isinstance(target, ast.Name)}
            for call in ast.walk(function):
                if not isinstance(call, ast.Call) or _called(call) not in CLIENTS:
                    continue
                unpacked = [keyword.value for keyword in call.keywords if keyword.arg is None]
                assert any((isinstance(value, ast.Call)
                            and _called(value) == "connection_options")
                           or (isinstance(value, ast.Name) and value.id in options)
                           for value in unpacked), f"line {call.lineno}"
                built += 1
        assert built == 4  # producer, consumer, admin, kafka.reached's connection


class TestRefused:
    @pytest.mark.parametrize(("given", "named"), [
        ({"kafka_security_protocol": "SASL_SSL"}, "KAFKA_SASL_USERNAME"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "u"},
         "KAFKA_SASL_PASSWORD"),
        ({"kafka_sasl_username": "u", "kafka_sasl_password": "p"}, "KAFKA_SECURITY_PROTOCOL"),
        ({"kafka_sasl_username": "u"}, "KAFKA_SECURITY_PROTOCOL"),
        ({"kafka_sasl_password": "p"}, "KAFKA_SECURITY_PROTOCOL"),
    ])
    def test_a_bad_combination_names_the_variable(self, given: dict[str, str],
                                                  named: str) -> None:
        with pytest.raises(pydantic.ValidationError, match=named):
            Settings(**given)

    @pytest.mark.parametrize("setting", [
        "kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"])
    @pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
    def test_certificates_without_tls(self, tmp_path: Path, setting: str,
                                      protocol: str) -> None:
        pem = tmp_path / "file.pem"
        pem.write_text("")
        sasl = {"kafka_sasl_username": "u", "kafka_sasl_password": "p"} \
            if protocol.startswith("SASL_") else {}
        with pytest.raises(pydantic.ValidationError,
                           match=f"{setting.upper()} set but KAFKA_SECURITY_PROTOCOL is"
                                 f" {protocol}"):
            Settings(kafka_security_protocol=protocol, **sasl, **{setting: pem})

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

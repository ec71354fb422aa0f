"""The broker at a start (services/core/broker_start.py): which failures are the broker's
outage, waited out, and which are mistakes in the Kafka settings that no wait mends; what
the lines about it say (the bootstrap servers, the setting, never the SASL password).
Waiting on a real broker: tests/integration/test_broker_at_start.py."""

from __future__ import annotations

import contextlib
import inspect
import logging
import socket
import ssl
from pathlib import Path

import pytest
from aiokafka.conn import create_conn
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    IllegalSaslStateError,
    IllegalStateError,
    InvalidReplicationFactorError,
    KafkaConnectionError,
    KafkaTimeoutError,
    LeaderNotAvailableError,
    NodeNotReadyError,
    NotControllerError,
    PolicyViolationError,
    RequestTimedOutError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnsupportedSaslMechanismError,
)
from pydantic import SecretStr

from devtools import certificates
from services.core import at_start, broker_start, kafka
from services.core.settings import Settings

OUTAGE, MISTAKE, OTHER = (at_start.Failure.OUTAGE, at_start.Failure.MISTAKE,
                          at_start.Failure.OTHER)
PASSWORD = "s3cret-Pa55"
SASL = Settings(kafka_bootstrap_servers="kafka-1:9093, kafka-2:9093",
                kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="router",
                kafka_sasl_password=SecretStr(PASSWORD))
# aiokafka's words for a password refused (a broker's SaslAuthenticate answer).
REFUSED = SaslAuthenticationFailed(
    "Authentication failed during authentication due to invalid credentials with SASL"
    " mechanism SCRAM-SHA-512")


def handshake_failure(client: ssl.SSLContext, made: certificates.BrokerCertificates, *,
                      host: str) -> ssl.SSLError:
    """What a TLS handshake of `client` with a broker holding `made`'s certificate raises
    on the client's end, in memory (no socket)."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(made.keystore)
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_end = client.wrap_bio(to_client, to_server, server_hostname=host)
    server_out, server_in = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_end = server.wrap_bio(server_in, server_out, server_side=True)
    for _ in range(10):
        try:
            client_end.do_handshake()
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as error:
            return error
        server_in.write(to_server.read())
        with contextlib.suppress(ssl.SSLWantReadError):
            server_end.do_handshake()
        to_client.write(server_out.read())
    raise AssertionError("the handshake went through")


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> certificates.BrokerCertificates:
    return certificates.generate(tmp_path_factory.mktemp("tls"))


def tls_settings(ca: Path, **more: object) -> Settings:
    return Settings(kafka_bootstrap_servers="127.0.0.1:9093", kafka_security_protocol="SSL",
                    kafka_ssl_cafile=ca, **more)


class TestWhatIsWaitedOut:
    @pytest.mark.parametrize("error", [
        KafkaConnectionError("Unable to bootstrap from [('127.0.0.1', 9092, 2)]"),
        ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 9092)"),
        socket.gaierror(-2, "Name or service not known"),  # its DNS name not there yet
        TimeoutError(),  # no answer within kafka.REACH_SECONDS
        KafkaTimeoutError(),
        NodeNotReadyError(), LeaderNotAvailableError(), RequestTimedOutError(),
        ssl.SSLEOFError(8, "EOF occurred in violation of protocol"),  # a handshake cut
        ExceptionGroup("no bootstrap server answered", [
            ConnectionRefusedError(111, "refused"), socket.gaierror(-2, "not known")]),
        # A TLS listener spoken to in plain text; a broker starting or going down alike.
        kafka.NoKafkaAnswer("kafka-1", 9093, "PLAINTEXT",
                            KafkaConnectionError("Connection at kafka-1:9093 closed")),
    ])
    def test_the_broker_down_starting_or_unreachable(self, error: Exception) -> None:
        assert broker_start.failure(error) is OUTAGE
        assert broker_start.mistake_in(error) is None


class TestWhatIsAMistake:
    @pytest.mark.parametrize(("error", "setting"), [
        (REFUSED, "KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD"),
        (UnsupportedSaslMechanismError(), "KAFKA_SASL_MECHANISM"),
        # SASL asked of a listener without it (SASL_SSL against an SSL port).
        (IllegalSaslStateError(), "KAFKA_SECURITY_PROTOCOL"),
        (TopicAuthorizationFailedError(), "KAFKA_SASL_USERNAME"),
        (ClusterAuthorizationFailedError(), "KAFKA_SASL_USERNAME"),
        # One server down, another refusing the password: every server would refuse it.
        (ExceptionGroup("no bootstrap server answered", [
            ConnectionRefusedError(111, "refused"), REFUSED]),
         "KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD"),
    ])
    def test_the_broker_refusing_us(self, error: Exception, setting: str) -> None:
        assert broker_start.failure(error) is MISTAKE
        mistake = broker_start.mistake_in(error)
        assert mistake is not None and mistake.setting == setting

    def test_a_ca_file_that_is_no_certificate(self, tmp_path: Path) -> None:
        ca = tmp_path / "ca.pem"
        ca.write_text("not a certificate\n")
        with pytest.raises(kafka.TlsFileUnusable) as raised:
            kafka.connection_options(tls_settings(ca))
        assert isinstance(raised.value, ssl.SSLError)  # as before, for the stages
        assert broker_start.failure(raised.value) is MISTAKE
        assert broker_start.mistake_in(raised.value) == broker_start.Mistake(
            "KAFKA_SSL_CAFILE", "correct KAFKA_SSL_CAFILE")

    def test_a_key_that_is_not_the_certificates(
            self, tmp_path: Path, made: certificates.BrokerCertificates) -> None:
        other = certificates.generate(tmp_path / "other")
        settings = tls_settings(made.ca, kafka_ssl_certfile=made.ca.with_name("broker.crt"),
                                kafka_ssl_keyfile=other.ca.with_name("broker.key"))
        with pytest.raises(kafka.TlsFileUnusable) as raised:
            kafka.connection_options(settings)
        mistake = broker_start.mistake_in(raised.value)
        assert mistake is not None
        assert mistake.setting == "KAFKA_SSL_CERTFILE / KAFKA_SSL_KEYFILE"

    def test_a_broker_certificate_the_ca_did_not_sign(
            self, tmp_path: Path, made: certificates.BrokerCertificates) -> None:
        another_ca = certificates.generate(tmp_path / "another").ca
        error = handshake_failure(kafka.tls_context(tls_settings(another_ca)), made,
                                  host="127.0.0.1")
        assert isinstance(error, ssl.SSLCertVerificationError)
        assert broker_start.failure(error) is MISTAKE
        mistake = broker_start.mistake_in(error)
        assert mistake is not None and mistake.setting == "KAFKA_SSL_CAFILE"

    def test_a_broker_named_otherwise_than_its_certificate(
            self, made: certificates.BrokerCertificates) -> None:
        error = handshake_failure(kafka.tls_context(tls_settings(made.ca)), made,
                                  host="kafka.elsewhere")
        mistake = broker_start.mistake_in(error)
        assert mistake is not None and mistake.setting == "KAFKA_BOOTSTRAP_SERVERS"
        assert "KAFKA_SSL_CHECK_HOSTNAME" in mistake.mend

    def test_a_broker_reached_by_an_address_its_certificate_does_not_name(self) -> None:
        # OpenSSL's X509_V_ERR_IP_ADDRESS_MISMATCH, as a bootstrap server given by its IP.
        error = ssl.SSLCertVerificationError(1, "certificate verify failed: IP address"
                                                " mismatch")
        error.verify_code = 64
        mistake = broker_start.mistake_in(error)
        assert mistake is not None and mistake.setting == "KAFKA_BOOTSTRAP_SERVERS"


class TestNeither:
    @pytest.mark.parametrize("error", [
        InvalidReplicationFactorError(), IllegalStateError(), ValueError("a bug"),
        ExceptionGroup("no bootstrap server answered", [
            ConnectionRefusedError(111, "refused"), ValueError("a bug")]),
    ])
    def test_is_raised_as_it_is(self, error: Exception) -> None:
        assert broker_start.failure(error) is OTHER


class TestTopicsTheBrokersDidNotMake:
    """CreateTopics answered, a topic's error each: kafka.report_created."""

    def test_are_told_apart_from_those_made_or_left_to_an_operator(
            self, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.INFO, logger=kafka.__name__), \
                pytest.raises(kafka.TopicsNotMade) as raised:
            kafka.report_created([("made", 0, None), ("made_by_another", 36, None),
                                  ("not_permitted", TopicAuthorizationFailedError.errno, None),
                                  ("too_few_brokers", InvalidReplicationFactorError.errno,
                                   None)])
        assert raised.value.refused == {"too_few_brokers": InvalidReplicationFactorError}
        assert [(record.getMessage(), getattr(record, "topic", None)) for record in
                caplog.records] == [("topic not created", "not_permitted"),
                                    ("topics created", None)]
        # docs/kafka-security.md: logged "with the error".
        assert getattr(caplog.records[0], "error", None) == "TopicAuthorizationFailedError"
        assert caplog.records[0].levelno == logging.WARNING

    def test_those_the_user_may_not_create_are_returned(self) -> None:
        """So that the router dead-letters the tickets of a department whose lanes they
        are (services/router/missing_lanes.py), where it waited on them for good."""
        assert kafka.report_created([
            ("made", 0, None), ("not_permitted", TopicAuthorizationFailedError.errno, None),
        ]) == {"not_permitted"}

    @pytest.mark.parametrize("error", [InvalidReplicationFactorError, NotControllerError,
                                       RequestTimedOutError])
    def test_are_waited_out_when_the_error_may_pass(self, error: type[Exception]) -> None:
        """Fewer brokers registered than KAFKA_REPLICATION_FACTOR while a cluster starts,
        a controller moving: the start waits, where it went on without the topics."""
        not_made = kafka.TopicsNotMade({"tickets.incoming": error})
        assert broker_start.failure(not_made) is OUTAGE
        assert broker_start.waiting(not_made, broker_start.problem(not_made, SASL), 2,
                                    brokers="kafka-1:9093") == (
            "the Kafka broker (KAFKA_BOOTSTRAP_SERVERS) at kafka-1:9093 has not made the"
            " topics (KAFKA_REPLICATION_FACTOR more than the brokers up?): waiting for it,"
            f" next try in 2 s (TopicsNotMade: the brokers did not make tickets.incoming"
            f" ({error.__name__}))")

    def test_are_a_mistake_when_the_brokers_rules_refuse_them(self) -> None:
        not_made = kafka.TopicsNotMade({"tickets.incoming": InvalidReplicationFactorError,
                                        "tickets.segmented": PolicyViolationError})
        assert broker_start.failure(not_made) is MISTAKE
        assert broker_start.refusal(not_made, SASL) == (
            "KAFKA_TOPIC_PARTITIONS / KAFKA_REPLICATION_FACTOR: the Kafka broker at"
            " kafka-1:9093,kafka-2:9093 cannot be used: TopicsNotMade: the brokers did not"
            " make tickets.incoming (InvalidReplicationFactorError); tickets.segmented"
            " (PolicyViolationError) (waiting would not mend it: set what the brokers' rules"
            " allow, or have an operator create the topics with Kafka's own tools)")


class TestWhatTheLinesSay:
    def test_where_names_the_bootstrap_servers(self) -> None:
        assert broker_start.where(SASL) == "kafka-1:9093,kafka-2:9093"

    def test_the_problem_is_in_one_line_without_the_password(self) -> None:
        error = SaslAuthenticationFailed(f"refused\n(tried {PASSWORD})")
        assert broker_start.problem(error, SASL) == \
            "(the driver's words hold the password: not shown)"
        refused = ConnectionRefusedError(111, "Connect call failed")
        assert broker_start.problem(refused, SASL) == \
            "ConnectionRefusedError: [Errno 111] Connect call failed"

    def test_servers_that_gave_no_kafka_answer_are_said_so(self) -> None:
        """Only when each of them took the connection: one unreachable may be the one."""
        closed = kafka.NoKafkaAnswer("kafka-1", 9093, "SASL_SSL", TimeoutError())
        assert str(closed) == (
            "NoKafkaAnswer: kafka-1:9093 took the connection, then gave no Kafka answer"
            " (TimeoutError): not a Kafka listener, or one of another security protocol than"
            " KAFKA_SECURITY_PROTOCOL=SASL_SSL")
        both = ExceptionGroup("none", [closed, kafka.NoKafkaAnswer(
            "kafka-2", 9093, "SASL_SSL", KafkaConnectionError("Connection closed"))])
        refused = ExceptionGroup("none", [closed, ConnectionRefusedError(111, "refused")])
        said = {error: (broker_start.waiting(error, "...", 1, brokers="b"),
                        broker_start.unreachable(error, SASL))
                for error in (closed, both, refused)}
        for error in (closed, both):
            waiting, command = said[error]
            assert waiting.startswith("the Kafka broker (KAFKA_BOOTSTRAP_SERVERS) at b gives"
                                      " no Kafka answer: waiting for it")
            assert command.startswith("KAFKA_BOOTSTRAP_SERVERS / KAFKA_SECURITY_PROTOCOL:"
                                      " the Kafka broker at kafka-1:9093,kafka-2:9093 gives"
                                      " no Kafka answer: ")
        waiting, command = said[refused]
        assert "is unreachable: waiting for it" in waiting
        assert command.startswith("KAFKA_BOOTSTRAP_SERVERS: the Kafka broker at"
                                  " kafka-1:9093,kafka-2:9093 is unreachable: ")

    def test_a_refusal_names_the_setting_and_what_was_wrong(self) -> None:
        line = broker_start.refusal(REFUSED, SASL)
        assert line.startswith("KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD: the Kafka broker"
                               " at kafka-1:9093,kafka-2:9093 cannot be used: ")
        assert "invalid credentials" in line
        assert PASSWORD not in line and "\n" not in line


class TestAServicesStart:
    def test_a_mistake_exits_1_at_once_with_the_line_logged(
            self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        ca = tmp_path / "ca.pem"
        ca.write_text("not a certificate\n")
        waits: list[float] = []
        with caplog.at_level(logging.WARNING, logger=broker_start.__name__), \
                pytest.raises(SystemExit) as exited:
            broker_start.ready_blocking(tls_settings(ca), ["tickets.incoming"],
                                        sleep=waits.append)
        assert exited.value.code == 1
        assert waits == []
        [logged] = caplog.records
        assert logged.levelno == logging.ERROR
        assert logged.getMessage().startswith(
            "KAFKA_SSL_CAFILE: the Kafka broker at 127.0.0.1:9093 cannot be used:"
            f" {ca} cannot be used as a TLS file: SSLError: ")


class TestACommand:
    async def test_a_mistake_ends_it_at_once_in_one_line(self, tmp_path: Path) -> None:
        ca = tmp_path / "ca.pem"
        ca.write_text("not a certificate\n")
        with pytest.raises(broker_start.BrokerUnusable) as ended:
            await broker_start.reached(tls_settings(ca))
        assert ended.value.code == ended.value.line  # printed by Python, exit status 1
        assert ended.value.line.startswith("KAFKA_SSL_CAFILE: the Kafka broker at ")
        assert "\n" not in ended.value.line


def test_what_reaching_a_broker_passes_the_connection_is_what_it_takes(
        made: certificates.BrokerCertificates) -> None:
    """`kafka.reached` opens its connection with the clients' own options: each must be
    one aiokafka's connection takes, or every start would fail."""
    options = kafka.connection_options(Settings(
        kafka_bootstrap_servers="kafka-1:9093", kafka_security_protocol="SASL_SSL",
        kafka_ssl_cafile=made.ca, kafka_sasl_username="u", kafka_sasl_password="p"))
    del options["bootstrap_servers"]
    assert set(options) <= set(inspect.signature(create_conn).parameters)

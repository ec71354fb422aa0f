"""The department tool's reporting commands (`pick-up`, `respond`, `wait-on-customer`,
`resolve`, `transfer`, `priority`): the request each makes of the router, and what it
prints (the router itself is tested in tests/integration and tests/e2e)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from services.core import access, http
from services.core.credentials_api import Holder
from services.core.settings import Settings
from services.departments import cli, queue


class Sent:
    def __init__(self, status: int, answer: dict[str, Any]) -> None:
        self.status, self.answer = status, answer
        self.requests: list[tuple[str, Any, dict[str, str]]] = []

    def __call__(self, url: str, *, json: Any, headers: dict[str, str],
                 timeout: float) -> httpx.Response:
        self.requests.append((url, json, headers))
        return httpx.Response(self.status, json=self.answer,
                              request=httpx.Request("POST", url))


@pytest.fixture
def router(monkeypatch: pytest.MonkeyPatch) -> Sent:
    monkeypatch.setenv("ROUTER_URL", "http://router.test")
    monkeypatch.setenv("API_TOKEN", "rt_department")
    return Sent(200, {"ticket_id": "t-1", "priority": 1, "deadlines": {}})


class TestPriorityCommand:
    def test_posts_the_priority_and_reason_and_prints_the_receipt(
            self, router: Sent, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(queue.httpx, "post", router)
        result = CliRunner().invoke(cli.app, ["priority", "t-1", "--to", "1",
                                              "--reason", "outage"])
        assert result.exit_code == 0, result.output
        assert router.requests == [(
            "http://router.test/v1/tickets/t-1/priority", {"priority": 1, "reason": "outage"},
            {"Authorization": "Bearer rt_department"})]
        assert json.loads(result.output) == router.answer

    def test_a_refusal_is_shown_and_exits_1(self, router: Sent,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
        refusal = Sent(409, {"error": "same_priority", "detail": "the ticket has priority 1"})
        monkeypatch.setattr(queue.httpx, "post", refusal)
        result = CliRunner().invoke(cli.app, ["priority", "t-1", "--to", "1",
                                              "--reason", "outage"])
        assert result.exit_code == 1
        assert "not recorded: 409" in result.output and "same_priority" in result.output


class TestReportCommands:
    @pytest.mark.parametrize(("command", "kind"), [
        ("pick-up", "picked_up"), ("respond", "responded"),
        ("wait-on-customer", "waiting_on_customer"), ("resolve", "resolved")])
    def test_each_posts_its_event_with_the_department_given(
            self, router: Sent, monkeypatch: pytest.MonkeyPatch, command: str,
            kind: str) -> None:
        monkeypatch.setattr(queue.httpx, "post", router)
        result = CliRunner().invoke(cli.app, [command, "t-1", "--department", "care"])
        assert result.exit_code == 0, result.output
        [(url, body, headers)] = router.requests
        assert (url, body) == (
            "http://router.test/v1/tickets/t-1/events", {"type": kind, "department": "care"})
        assert headers["Authorization"] == "Bearer rt_department"
        assert headers["Idempotency-Key"]  # a new one for each report
        assert json.loads(result.output) == router.answer

    def test_each_report_goes_under_a_key_of_its_own_or_the_one_given(
            self, router: Sent, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(queue.httpx, "post", router)
        for command in (["respond", "t-1"], ["respond", "t-1"],
                        ["respond", "t-1", "--idempotency-key", "k-given"]):
            assert CliRunner().invoke(cli.app, command).exit_code == 0
        keys = [headers["Idempotency-Key"] for _, _, headers in router.requests]
        assert keys[0] != keys[1] and keys[2] == "k-given"

    def test_without_a_department_none_is_sent(self, router: Sent,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(queue.httpx, "post", router)
        assert CliRunner().invoke(cli.app, ["respond", "t-1"]).exit_code == 0
        assert router.requests[0][1] == {"type": "responded"}

    def test_transfer_sends_the_department_as_where_it_comes_from(
            self, router: Sent, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(queue.httpx, "post", router)
        result = CliRunner().invoke(cli.app, ["transfer", "t-1", "--to", "billing",
                                              "--reason", "invoice", "--department", "care"])
        assert result.exit_code == 0, result.output
        assert router.requests == [(
            "http://router.test/v1/tickets/t-1/transfer",
            {"to_department": "billing", "reason": "invoice", "from_department": "care"},
            {"Authorization": "Bearer rt_department"})]

    @pytest.mark.parametrize("command", [
        ["pick-up", "t-1"], ["wait-on-customer", "t-1"], ["resolve", "t-1"],
        ["transfer", "t-1", "--to", "billing", "--reason", "invoice"]])
    def test_a_refusal_is_shown_and_exits_1(self, monkeypatch: pytest.MonkeyPatch,
                                            router: Sent, command: list[str]) -> None:
        refusal = Sent(403, {"error": "forbidden", "detail": "not your department's"})
        monkeypatch.setattr(queue.httpx, "post", refusal)
        result = CliRunner().invoke(cli.app, command)
        assert result.exit_code == 1
        assert "not recorded: 403" in result.output and "forbidden" in result.output


class Answers:
    """The router's answers in turn (the last one again once they run out), as `Sent`
    records the requests."""

    def __init__(self, *answers: tuple[int, dict[str, Any], dict[str, str]]) -> None:
        self.answers = list(answers)
        self.requests: list[str] = []

    def __call__(self, url: str, **_: object) -> httpx.Response:
        self.requests.append(url)
        status, body, headers = self.answers.pop(0) if len(self.answers) > 1 \
            else self.answers[0]
        return httpx.Response(status, json=body, headers=headers,
                              request=httpx.Request("POST", url))


OVER_THE_RATE = (429, {"error": "rate_limited", "detail": "over the rate"},
                 {"Retry-After": "3"})
COMMANDS = {"transfer": (["transfer", "t-1", "--to", "billing", "--reason", "invoice"],
                         "transfer"),
            "priority": (["priority", "t-1", "--to", "1", "--reason", "outage"],
                         "change_priority")}


class TestATransferOrPriorityChangeOverTheRate:
    """queue.transfer and queue.change_priority go under no Idempotency-Key: sent again
    only when the router turned them away unread (429 with Retry-After), after its
    wait, and never after an answer that may have acted on them."""

    @pytest.fixture
    def waits(self, router: Sent, monkeypatch: pytest.MonkeyPatch) -> list[float]:
        waited: list[float] = []
        for name in ("transfer", "change_priority"):
            command = getattr(queue, name)
            monkeypatch.setattr(cli.queue, name, lambda *args, _command=command, **kwargs:
                                _command(*args, **kwargs, sleep=waited.append))
        return waited

    @pytest.mark.parametrize("command", COMMANDS)
    def test_it_is_sent_again_after_the_wait_the_router_asks_for(
            self, monkeypatch: pytest.MonkeyPatch, waits: list[float], command: str) -> None:
        router = Answers(OVER_THE_RATE, (202, {"ticket_id": "t-1"}, {}))
        monkeypatch.setattr(queue.httpx, "post", router)
        arguments, _ = COMMANDS[command]
        result = CliRunner().invoke(cli.app, arguments)
        assert result.exit_code == 0, result.output
        assert len(router.requests) == 2 and waits == [3.0]
        assert "trying again in 3 s" in result.output
        assert json.loads(result.output.splitlines()[-1]) == {"ticket_id": "t-1"}

    @pytest.mark.parametrize("command", COMMANDS)
    @pytest.mark.parametrize("answer", [
        (503, {"error": "unavailable"}, {"Retry-After": "1"}),
        (409, {"error": "handover_in_flight"}, {"Retry-After": "1"}),
        (429, {"error": "rate_limited"}, {})], ids=["503", "409", "429 without a wait"])
    def test_any_other_failure_is_final(
            self, monkeypatch: pytest.MonkeyPatch, waits: list[float], command: str,
            answer: tuple[int, dict[str, Any], dict[str, str]]) -> None:
        router = Answers(answer)
        monkeypatch.setattr(queue.httpx, "post", router)
        arguments, _ = COMMANDS[command]
        result = CliRunner().invoke(cli.app, arguments)
        assert result.exit_code == 1
        assert len(router.requests) == 1 and waits == []
        assert f"not recorded: {answer[0]}" in result.output

    @pytest.mark.parametrize("command", COMMANDS)
    def test_no_try_starts_after_it_gives_up(self, command: str) -> None:
        router = Answers(OVER_THE_RATE)
        waited: list[float] = []
        _, name = COMMANDS[command]
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(queue.httpx, "post", router)
            arguments: tuple[Any, ...] = ("http://router.test", "t-1", *(
                ("billing", "invoice") if name == "transfer" else (1, "outage")))
            with pytest.raises(httpx.HTTPStatusError):
                getattr(queue, name)(*arguments, token=None, give_up_after=0.0,
                                     sleep=waited.append)
        assert len(router.requests) == 1 and waited == []


class TestAReportNotRecorded:
    @pytest.mark.parametrize("key", ["with space", "ключ", "x" * 256, "line\nbreak"])
    def test_a_key_the_router_would_refuse_is_refused_before_sending(
            self, router: Sent, monkeypatch: pytest.MonkeyPatch, key: str) -> None:
        monkeypatch.setattr(queue.httpx, "post", router)
        result = CliRunner().invoke(cli.app, ["respond", "t-1", "--idempotency-key", key])
        assert result.exit_code == 2
        assert "--idempotency-key" in result.output and "printable ASCII" in result.output
        assert router.requests == []

    @pytest.mark.parametrize("command", ["resolve", "wait-on-customer"])
    def test_on_giving_up_it_says_the_command_to_run_again_under_the_same_key(
            self, monkeypatch: pytest.MonkeyPatch, command: str) -> None:
        unavailable = Sent(503, {"error": "unavailable", "detail": "Kafka did not answer"})
        monkeypatch.setattr(queue.httpx, "post", unavailable)
        report = queue.report
        monkeypatch.setattr(cli.queue, "report", lambda *args, **kwargs: report(
            *args, **kwargs, give_up_after=0.0))
        result = CliRunner().invoke(cli.app, [command, "t-1", "--department", "care",
                                              "--idempotency-key", "k-7"])
        assert result.exit_code == 1
        assert "not recorded: 503" in result.output
        assert (f"to try again, run: department {command} t-1 --department care"
                " --idempotency-key k-7") in result.output
        assert [headers["Idempotency-Key"] for _, _, headers in unavailable.requests] == \
            ["k-7"]

    def test_a_key_used_for_another_report_says_so(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        reused = Sent(422, {"error": "invalid_request", "fields": [{
            "field": "header.Idempotency-Key", "type": "idempotency_key_reused",
            "problem": "this key was used for a different request"}]})
        monkeypatch.setattr(queue.httpx, "post", reused)
        result = CliRunner().invoke(cli.app, ["respond", "t-1", "--idempotency-key", "k-7"])
        assert result.exit_code == 1
        assert "used for another report" in result.output
        assert "to try again" not in result.output

    def test_a_try_left_unanswered_is_not_confirmed_rather_than_not_recorded(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        def silent(url: str, **_: object) -> httpx.Response:
            raise httpx.ReadTimeout("no answer", request=httpx.Request("POST", url))

        monkeypatch.setattr(queue.httpx, "post", silent)
        report = queue.report
        monkeypatch.setattr(cli.queue, "report", lambda *args, **kwargs: report(
            *args, **kwargs, give_up_after=0.0))
        result = CliRunner().invoke(cli.app, ["respond", "t-1", "--idempotency-key", "k-8"])
        assert result.exit_code == 1
        assert result.output.startswith("not confirmed") and "not recorded:" not in result.output
        assert "--idempotency-key k-8" in result.output

    @pytest.mark.parametrize("last", [
        httpx.ConnectError("refused", request=httpx.Request("POST", "http://router.test")),
        httpx.HTTPStatusError("unavailable", request=httpx.Request(
            "POST", "http://router.test"), response=httpx.Response(503, text="unavailable")),
    ], ids=["refused", "503"])
    def test_after_an_earlier_try_left_unanswered_it_is_not_confirmed_to_the_end(
            self, router: Sent, monkeypatch: pytest.MonkeyPatch, last: httpx.HTTPError) -> None:
        def report(*args: object, on_retry: Any, **kwargs: object) -> dict[str, str]:
            request = httpx.Request("POST", "http://router.test")
            on_retry(httpx.ReadTimeout("no answer", request=request), 0.5)
            on_retry(last, 1.0)
            raise last

        monkeypatch.setattr(cli.queue, "report", report)
        result = CliRunner().invoke(cli.app, ["respond", "t-1", "--idempotency-key", "k-9"])
        assert result.exit_code == 1
        first, second, final, again = result.output.splitlines()
        assert first.startswith("not confirmed yet (no answer from the router")
        assert second.startswith("not confirmed yet (") and "may be recorded" in second
        assert final.startswith("not confirmed (an earlier try was left unanswered")
        assert "not recorded" not in result.output
        assert again.startswith("to learn whether it was") \
            and "department respond t-1 --idempotency-key k-9" in again

    @pytest.mark.parametrize("earlier", [
        httpx.ConnectError("refused", request=httpx.Request("POST", "http://router.test")),
        httpx.HTTPStatusError("unavailable", request=httpx.Request(
            "POST", "http://router.test"), response=httpx.Response(503, text="unavailable")),
    ], ids=["refused", "503"])
    def test_tries_all_answered_or_never_sent_are_not_recorded(
            self, router: Sent, monkeypatch: pytest.MonkeyPatch,
            earlier: httpx.HTTPError) -> None:
        final = httpx.HTTPStatusError("unavailable", request=httpx.Request(
            "POST", "http://router.test"), response=httpx.Response(503, text="unavailable"))

        def report(*args: object, on_retry: Any, **kwargs: object) -> dict[str, str]:
            on_retry(earlier, 0.5)
            raise final

        monkeypatch.setattr(cli.queue, "report", report)
        result = CliRunner().invoke(cli.app, ["respond", "t-1", "--idempotency-key", "k-9"])
        assert result.exit_code == 1
        assert result.output.startswith("not recorded yet (")
        assert "not recorded: 503" in result.output and "not confirmed" not in result.output
        assert "to try again, run: department respond t-1 --idempotency-key k-9" \
            in result.output

    def test_a_final_answer_after_a_try_left_unanswered_is_not_recorded(
            self, router: Sent, monkeypatch: pytest.MonkeyPatch) -> None:
        """The router answers a key it took a report under with that report's receipt:
        a refusal under it says no try was recorded."""
        request = httpx.Request("POST", "http://router.test")
        refusal = httpx.HTTPStatusError("forbidden", request=request, response=httpx.Response(
            403, text="not your department's"))

        def report(*args: object, on_retry: Any, **kwargs: object) -> dict[str, str]:
            on_retry(httpx.ReadTimeout("no answer", request=request), 0.5)
            raise refusal

        monkeypatch.setattr(cli.queue, "report", report)
        result = CliRunner().invoke(cli.app, ["respond", "t-1", "--idempotency-key", "k-9"])
        assert result.exit_code == 1
        assert "not recorded: 403" in result.output and "to try again" not in result.output


def words(output: str) -> str:
    """The output's words, out of the box an error is drawn in."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", output).split())


class TestQueueArguments:
    """Checked before the router or Kafka is asked anything."""

    @pytest.fixture(autouse=True)
    def nothing_asked(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("API_TOKEN", "rt_admin")

        def holder(*args: object, **kwargs: object) -> None:
            raise AssertionError("the router was asked")

        monkeypatch.setattr(cli.queue, "holder", holder)

    @pytest.mark.parametrize("wait", ["nan", "inf", "-inf", "-1", "3601"])
    def test_a_wait_that_is_no_number_of_seconds_from_0_to_an_hour_is_refused(
            self, wait: str) -> None:
        result = CliRunner().invoke(cli.app, ["queue", "public_sector", "--wait", wait])
        assert result.exit_code == 2, result.output
        told = words(result.output)
        assert "Invalid value for '--wait'" in told and "seconds from 0 to 3600" in told
        assert "Traceback" not in told

    @pytest.mark.parametrize("department",
                             ["Public Sector", "public.sector", "", "x" * 64, "2nd_line"])
    def test_a_department_name_no_queue_can_have_is_refused(self, department: str) -> None:
        result = CliRunner().invoke(cli.app, ["queue", department])
        assert result.exit_code == 2, result.output
        told = words(result.output)
        assert "Invalid value for 'department'" in told
        assert ("use lower-case letters, digits, '_' or '-', starting with a letter, at most"
                " 63 characters") in told


class TestKafkaPassword:
    """On a SASL cluster the queue's Kafka password is asked for (hidden) when
    KAFKA_SASL_PASSWORD is not set, whether the user comes from --kafka-user or from
    KAFKA_SASL_USERNAME; only once the router has said the credential may read."""

    @pytest.fixture
    def read_with(self, monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
        """The settings the queue is read with (no ticket waiting)."""
        for name in ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
        monkeypatch.setenv("API_TOKEN", "rt_department")
        monkeypatch.setattr(cli.queue, "holder", lambda *args, **kwargs: Holder(
            role=access.Role.DEPARTMENT, subject="public_sector"))
        settings: list[Settings] = []

        async def read_queue(given: Settings, *args: object,
                             **kwargs: object) -> AsyncIterator[object]:
            settings.append(given)
            return
            yield

        async def reached(given: Settings) -> None:  # the broker answers, as the reader
            assert given.kafka_sasl_password is not None  # asked for before it is reached

        monkeypatch.setattr(cli.queue, "read_queue", read_queue)
        monkeypatch.setattr(cli.broker_start, "reached", reached)
        return settings

    @pytest.mark.parametrize("user_from", ["environment", "option"])
    def test_without_a_password_it_is_asked_for_hidden(
            self, read_with: list[Settings], monkeypatch: pytest.MonkeyPatch,
            user_from: str) -> None:
        options = ["--kafka-user", "dept-public_sector"] if user_from == "option" else []
        if user_from == "environment":
            monkeypatch.setenv("KAFKA_SASL_USERNAME", "dept-public_sector")

        result = CliRunner().invoke(cli.app, ["queue", "public_sector", "--json", *options],
                                    input="s3cret\n")

        assert result.exit_code == 0, result.output
        [settings] = read_with
        assert settings.kafka_sasl_username == "dept-public_sector"
        assert settings.kafka_sasl_password is not None
        assert settings.kafka_sasl_password.get_secret_value() == "s3cret"
        assert "Kafka password of dept-public_sector" in result.output
        assert "s3cret" not in result.output

    def test_the_option_overrides_the_user_of_the_environment(
            self, read_with: list[Settings], monkeypatch: pytest.MonkeyPatch) -> None:
        """docs/kafka-security.md: --kafka-user overrides KAFKA_SASL_USERNAME (its
        password asked for, not the other user's)."""
        monkeypatch.setenv("KAFKA_SASL_USERNAME", "dept-customer_care")
        result = CliRunner().invoke(
            cli.app, ["queue", "public_sector", "--json", "--kafka-user", "dept-public_sector"],
            input="s3cret\n")
        assert result.exit_code == 0, result.output
        [settings] = read_with
        assert settings.kafka_sasl_username == "dept-public_sector"
        assert "Kafka password of dept-public_sector" in result.output

    def test_the_environment_is_read_in_any_case_as_the_settings_read_it(
            self, read_with: list[Settings], monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("KAFKA_SECURITY_PROTOCOL")
        monkeypatch.setenv("kafka_security_protocol", "SASL_PLAINTEXT")
        monkeypatch.setenv("kafka_sasl_username", "dept-public_sector")
        result = CliRunner().invoke(cli.app, ["queue", "public_sector", "--json"],
                                    input="s3cret\n")
        assert result.exit_code == 0, result.output
        assert "Kafka password of dept-public_sector" in result.output

    def test_a_password_in_the_environment_is_not_asked_for(
            self, read_with: list[Settings], monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("KAFKA_SASL_USERNAME", "dept-public_sector")
        monkeypatch.setenv("KAFKA_SASL_PASSWORD", "from-env")

        result = CliRunner().invoke(cli.app, ["queue", "public_sector", "--json"])

        assert result.exit_code == 0, result.output
        assert "password" not in result.output
        [settings] = read_with
        assert settings.kafka_sasl_password is not None
        assert settings.kafka_sasl_password.get_secret_value() == "from-env"

    def test_no_password_is_asked_for_a_credential_the_router_refuses(
            self, read_with: list[Settings], monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("KAFKA_SASL_USERNAME", "dept-public_sector")
        monkeypatch.setattr(cli.queue, "holder", lambda *args, **kwargs: Holder(
            role=access.Role.DEPARTMENT, subject="customer_care"))

        result = CliRunner().invoke(cli.app, ["queue", "public_sector"], input="s3cret\n")

        assert result.exit_code == 1
        assert "password" not in result.output
        assert read_with == []


class TestAQueueKafkaRefuses:
    def test_the_read_ends_in_one_line_naming_the_department(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        """E.g. none of its lanes exists (queue.NoQueue: its words are checked on a real
        broker in tests/integration/test_department_queue.py)."""
        monkeypatch.setenv("API_TOKEN", "rt_admin")
        monkeypatch.setattr(cli.queue, "holder", lambda *args, **kwargs: Holder(
            role=access.Role.ADMIN, subject=None))

        async def read_queue(*args: object, **kwargs: object) -> AsyncIterator[object]:
            raise queue.NoQueue("public_sector", ["dept.public_sector"])
            yield

        async def reached(given: Settings) -> None:
            return None

        monkeypatch.setattr(cli.queue, "read_queue", read_queue)
        monkeypatch.setattr(cli.broker_start, "reached", reached)
        result = CliRunner().invoke(cli.app, ["queue", "public_sector"])
        assert result.exit_code == 1
        assert result.output.splitlines() == [
            "cannot read the queue of public_sector: no lane of public_sector exists, or"
            " this Kafka user may read none of them (dept.public_sector): a department's"
            " lanes are made when a routing table naming it is put in force"]

    def test_a_department_the_routing_table_lacks_is_refused_in_the_routers_words(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Named as the argument typed (command_line.refusal with cli.OPTIONS), before
        the credential's scope is judged or Kafka asked (the router's 422 on a real
        router: TestATypo in tests/e2e/test_department_tool.py)."""
        monkeypatch.setenv("ROUTER_URL", "http://router.test")
        monkeypatch.setenv("API_TOKEN", "rt_department")
        answer = http.invalid([{"field": "query.department", "type": "value_error",
                                "problem": "no department 'publc_sector' in the table"}])
        asked: list[Any] = []

        def get(url: str, **kwargs: Any) -> httpx.Response:
            asked.append(kwargs["params"])
            return httpx.Response(answer.status_code, json=json.loads(bytes(answer.body)),
                                  request=httpx.Request("GET", url))

        monkeypatch.setattr(queue.httpx, "get", get)
        result = CliRunner().invoke(cli.app, ["queue", "publc_sector"])
        assert result.exit_code == 1
        assert asked == [{"department": "publc_sector"}]
        assert result.output.splitlines() == [
            "refused: invalid_request: department: no department 'publc_sector' in the table"]


class TestRefusedFieldsNameTheOptions:
    """The router's refusal of a request field is said as one of the option typed
    (command_line.refusal with cli.OPTIONS), not as the API's field."""

    @pytest.mark.parametrize(("command", "field", "option"), [
        (["transfer", "t-1", "--to", "public-sector", "--reason", "invoice"],
         "body.to_department", "--to"),
        (["transfer", "t-1", "--to", "billing", "--reason", " ", "--department", "care"],
         "body.reason", "--reason"),
        (["priority", "t-1", "--to", "1", "--reason", "outage"], "body.priority", "--to"),
        (["respond", "t-1", "--department", "care"], "body.department", "--department")])
    def test_a_field_refused_is_named_by_its_option(
            self, router: Sent, monkeypatch: pytest.MonkeyPatch, command: list[str],
            field: str, option: str) -> None:
        answer = http.invalid([{"field": field, "problem": "what was wrong",
                                "type": "value_error"}])  # the router's 422
        monkeypatch.setattr(queue.httpx, "post", Sent(
            answer.status_code, json.loads(bytes(answer.body))))
        result = CliRunner().invoke(cli.app, command)
        assert result.exit_code == 1
        assert f"not recorded: 422 invalid_request: {option}: what was wrong" in result.output
        assert field not in result.output

    def test_every_option_named_is_one_of_the_tool(self) -> None:
        typed = {option for command in typer.main.get_command(cli.app).commands.values()
                 for param in command.params for option in [*param.opts, param.name]}
        assert set(cli.OPTIONS.values()) <= typed

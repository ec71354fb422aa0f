"""`routing simulate` takes its window's moments as the API does (services/core/moments),
and as many replications."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pydantic
import pytest
import typer
from typer.testing import CliRunner

from services.core import http
from services.simulator import api, cli, service


class TestWindowMoments:
    def test_an_rfc_3339_moment_with_its_offset_is_taken(self) -> None:
        assert cli.moment("2026-11-02T00:00:00+01:00", "--start") == datetime(
            2026, 11, 1, 23, tzinfo=UTC)

    @pytest.mark.parametrize(("given", "problem"), [
        ("2026-11-02T00:00:00", "not an RFC 3339 timestamp with offset"),
        ("2026-11-02 00:00+00:00", "not an RFC 3339 timestamp with offset"),
        ("2026-11-02", "not an RFC 3339 timestamp with offset"),
        ("0001-01-01T00:00:00+01:00", "outside the years 1 to 9999"),
    ])
    def test_anything_else_is_refused_saying_what_is_accepted(
            self, given: str, problem: str) -> None:
        with pytest.raises(typer.BadParameter, match=problem) as refused:
            cli.moment(given, "--end")
        assert refused.value.param_hint == "--end"


class TestReplications:
    """One limit (service.MOST_REPLICATIONS) for the command and the API it asks."""

    def test_the_api_takes_up_to_the_most_and_refuses_one_more(self) -> None:
        window = {"start": "2026-11-02T00:00:00+00:00", "end": "2026-11-03T00:00:00+00:00"}
        assert api.SimulationRequest.model_validate(window).replications \
            == service.REPLICATIONS
        assert api.SimulationRequest.model_validate(
            {**window, "replications": service.MOST_REPLICATIONS}).replications \
            == service.MOST_REPLICATIONS
        with pytest.raises(pydantic.ValidationError, match="replications"):
            api.SimulationRequest.model_validate(
                {**window, "replications": service.MOST_REPLICATIONS + 1})

    @pytest.mark.parametrize(("replications", "refused"), [
        (service.MOST_REPLICATIONS, False), (service.MOST_REPLICATIONS + 1, True)])
    def test_the_command_takes_as_many(self, monkeypatch: pytest.MonkeyPatch,
                                       replications: int, refused: bool) -> None:
        asked: list[str] = []
        monkeypatch.setattr(cli.report_client, "asked_in_turn",
                            lambda ask: asked.append("asked") or httpx.Response(503))
        command = typer.Typer()
        command.command()(cli.simulate)
        result = CliRunner().invoke(command, [
            "--start", "2026-11-02T00:00:00+00:00", "--end", "2026-11-03T00:00:00+00:00",
            "--replications", str(replications)], env={"COLUMNS": "200"})
        if refused:  # a usage error, before the router is asked
            assert (result.exit_code, asked) == (2, [])
            assert f"less than or equal to {service.MOST_REPLICATIONS}" in result.output
        else:  # asked (and refused by this fake router)
            assert (result.exit_code, asked) == (1, ["asked"])


class TestCandidateFiles:
    """A candidate file that cannot be read is a usage error naming its option, before the
    router is asked (it was a traceback)."""

    @pytest.mark.parametrize("option", ["--table", "--rules"])
    @pytest.mark.parametrize(("content", "problem"), [
        (None, "No such file or directory"), (b"\xff\xfe", "not UTF-8 text")])
    def test_one_missing_or_not_text_is_refused_naming_the_option(
            self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, option: str,
            content: bytes | None, problem: str) -> None:
        asked: list[str] = []
        monkeypatch.setattr(cli.report_client, "asked_in_turn",
                            lambda ask: asked.append("asked") or httpx.Response(503))
        candidate = tmp_path / "candidate-routing.yaml"
        if content is not None:
            candidate.write_bytes(content)
        command = typer.Typer()
        command.command()(cli.simulate)
        result = CliRunner().invoke(command, [
            "--start", "2026-11-02T00:00:00+00:00", "--end", "2026-11-03T00:00:00+00:00",
            option, str(candidate)], env={"COLUMNS": "200"})
        assert (result.exit_code, asked) == (2, [])
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert option in result.output and problem in result.output
        assert "a YAML or JSON file is accepted" in result.output


class TestRefusalsNameTheOptions:
    """The router's refusal of a field is said as one of the option the user typed
    (`--end`), not of the API's field (`body.end`): command_line.refusal."""

    def refused(self, monkeypatch: pytest.MonkeyPatch, fields: list[dict[str, str]]) -> str:
        answer = http.invalid(fields)  # the API's 422, as its handlers answer
        monkeypatch.setattr(cli.report_client, "asked_in_turn", lambda ask: httpx.Response(
            answer.status_code, content=answer.body))
        command = typer.Typer()
        command.command()(cli.simulate)
        result = CliRunner().invoke(command, [
            "--start", "2026-11-02T00:00:00+00:00", "--end", "2027-11-03T00:00:00+00:00"],
            env={"COLUMNS": "200"})
        assert result.exit_code == 1
        return result.output

    def test_a_field_is_named_by_its_option(self, monkeypatch: pytest.MonkeyPatch) -> None:
        told = self.refused(monkeypatch, [
            {"field": "body.end", "problem": "at most 366 days after start",
             "type": "value_error"},
            {"field": "body.table.routes", "problem": "line 3: not a list",
             "type": "value_error"}])
        assert "--end: at most 366 days after start" in told
        assert "--table (routes): line 3: not a list" in told
        assert "body." not in told

    def test_a_field_no_option_sets_keeps_the_api_name(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        told = self.refused(monkeypatch, [
            {"field": "header.Authorization", "problem": "send a credential",
             "type": "value_error"}])
        assert "header.Authorization: send a credential" in told

    def test_every_field_the_command_sends_has_its_option(self) -> None:
        sent = cli.request_body(datetime(2026, 11, 2, tzinfo=UTC), datetime(
            2026, 11, 3, tzinfo=UTC), table=None, rules=None, table_version_id=None,
            replications=1)
        assert set(cli.OPTIONS) == {f"body.{field}" for field in sent}
        assert set(sent) <= set(api.SimulationRequest.model_fields)
        command = typer.Typer()
        command.command()(cli.simulate)
        typed = {option for param in typer.main.get_command(command).params
                 for option in param.opts}
        assert set(cli.OPTIONS.values()) <= typed

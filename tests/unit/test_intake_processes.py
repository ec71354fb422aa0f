"""The layout of several intake processes (devtools.processes.pipeline_processes with
`intakes`): they serve ROUTER_PORT together, each on a port and an instance id of its
own; the routing instance and the other services are as with one intake."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools import processes

SERVICE_PORTS = {"segmenter": 9001, "router": 9000, "metrics": 9002,
                 processes.ROUTER_STAGE_INSTANCE: 9003, "intake-1": 9011, "intake-2": 9012,
                 "intake-3": 9013}


def test_three_intakes_share_the_router_port_each_with_its_own(tmp_path: Path) -> None:
    started = processes.pipeline_processes({"ROUTER_PORT": "9000"}, SERVICE_PORTS,
                                           tmp_path, split=True, intakes=3)
    intakes = [s for s in started if s.module == "router" and
               s.env.get("ROUTER_STAGE") == "false"]
    assert [s.name for s in intakes] == ["router", "intake-2", "intake-3"]
    assert [s.port for s in intakes] == [9011, 9012, 9013]
    assert {s.env["ROUTER_PORT"] for s in intakes} == {"9011", "9012", "9013"}
    assert {s.env["INTAKE_SHARED_PORT"] for s in intakes} == {"9000"}
    assert [s.env.get("INSTANCE_ID", "0") for s in intakes] == ["0", "2", "3"]
    assert len({s.log_file for s in started}) == len(started)
    routing = next(s for s in started if s.name == processes.ROUTER_STAGE_INSTANCE)
    assert "INTAKE_SHARED_PORT" not in routing.env
    assert processes.intake_port_names(3) == ("intake-1", "intake-2", "intake-3")


def test_one_intake_serves_the_router_port_itself(tmp_path: Path) -> None:
    started = processes.pipeline_processes({}, SERVICE_PORTS, tmp_path, split=True)
    router = next(s for s in started if s.name == "router")
    assert router.port == 9000
    assert "INTAKE_SHARED_PORT" not in router.env
    assert processes.intake_port_names(1) == ()


def test_several_intakes_need_the_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        processes.pipeline_processes({}, SERVICE_PORTS, tmp_path, split=False, intakes=2)

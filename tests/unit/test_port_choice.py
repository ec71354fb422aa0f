"""The ports a test's servers are given lie outside the kernel's ephemeral range, where
an outgoing connection may take one before its server binds it (devtools/ports.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools import ports


class TestChoosable:
    def test_the_ephemeral_range_is_left_out(self) -> None:
        chosen = ports.choosable((32768, 60999))
        assert chosen == [range(10000, 32768), range(61000, 65536)]

    def test_a_range_up_to_the_last_port_leaves_those_below(self) -> None:
        assert ports.choosable((20000, 65535)) == [range(10000, 20000)]

    def test_a_range_from_the_floor_leaves_those_above(self) -> None:
        assert ports.choosable((10000, 50000)) == [range(50001, 65536)]

    def test_nothing_above_the_floor_left_takes_those_below_it(self) -> None:
        assert ports.choosable((9000, 65535)) == [range(1024, 9000)]

    def test_no_port_left_is_said(self) -> None:
        with pytest.raises(RuntimeError, match="1024-65535 leaves no port"):
            ports.choosable((1024, 65535))


class TestEphemeralRange:
    def test_read_from_the_kernels_file(self, tmp_path: Path) -> None:
        file = tmp_path / "ip_local_port_range"
        file.write_text("40000\t50000\n")
        assert ports.ephemeral_range(file) == (40000, 50000)

    def test_the_kernels_default_where_it_cannot_be_read(self, tmp_path: Path) -> None:
        assert ports.ephemeral_range(tmp_path / "missing") == (32768, 60999)

"""Manager option parsing."""

from __future__ import annotations

import pytest

from dynamo_snapshot.runtime.manager import Manager, ManagerOptions, parse_bind_address


def test_parse_bind_address() -> None:
    assert parse_bind_address(":8080") == ("0.0.0.0", 8080)
    assert parse_bind_address("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_bind_address("[::1]:9090") == ("::1", 9090)
    assert parse_bind_address("0") is None
    with pytest.raises(ValueError, match="host:port"):
        parse_bind_address("8080x")


def test_leader_election_needs_an_id() -> None:
    with pytest.raises(ValueError, match="leader_election_id"):
        Manager(object(), ManagerOptions(leader_election=True))

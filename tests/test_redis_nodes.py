"""Which Redis node carries a name (layers.redis_nodes), without Redis: the same node in every process
given the same ``hosts``, users spread about evenly, one probe name per node, and ``hosts`` checked."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from wsgateway.layers.redis import RedisChannelLayer
from wsgateway.layers.redis_nodes import names_per_node, node_of, only_node, parse_hosts, sockets_on

NAMES = [f"wsgateway.user.{n}" for n in range(1, 1001)]


def test_a_name_is_on_the_same_node_in_another_process() -> None:
    """Python's str hash is salted per process (PYTHONHASHSEED): a node chosen with it would differ
    between two daphnes. The subprocess runs with another seed on purpose."""
    here = [node_of(name, 3) for name in NAMES]
    code = (
        "from wsgateway.layers.redis_nodes import node_of\n"
        "print(','.join(str(node_of(f'wsgateway.user.{n}', 3)) for n in range(1, 1001)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={"PYTHONHASHSEED": "12345", "PATH": "", "PYTHONPATH": ":".join(sys.path)},
    ).stdout
    assert [int(n) for n in out.strip().split(",")] == here


@pytest.mark.parametrize("count", [2, 3, 4])
def test_a_thousand_users_groups_spread_about_evenly(count: int) -> None:
    spread = Counter(node_of(name, count) for name in NAMES)
    assert sorted(spread) == list(range(count))
    fair = 1000 / count
    assert all(0.75 * fair <= n <= 1.25 * fair for n in spread.values()), spread


def test_one_node_carries_everything() -> None:
    assert {node_of(name, 1) for name in NAMES} == {0}
    assert names_per_node("wsgateway.health.x", 1) == ["wsgateway.health.x"]


@pytest.mark.parametrize("count", [2, 3, 8])
def test_a_probe_has_one_group_per_node_in_order(count: int) -> None:
    names = names_per_node("wsgateway.health.abc", count)
    assert [node_of(name, count) for name in names] == list(range(count))
    assert all(name.startswith("wsgateway.health.abc.") for name in names)


def test_hosts_are_urls_or_dicts_with_an_address() -> None:
    hosts = parse_hosts(["redis://a:6379/0", {"address": "redis://b:6380/0", "socket_timeout": 15}])
    assert hosts == [("redis://a:6379/0", {}), ("redis://b:6380/0", {"socket_timeout": 15})]
    assert parse_hosts(None) == [("redis://127.0.0.1:6379/0", {})]
    assert parse_hosts([]) == [("redis://127.0.0.1:6379/0", {})]


@pytest.mark.parametrize(
    ("hosts", "words"),
    [
        (["redis://a:6379/0", "redis://a:6379/0"], "hosts[1] is the Redis of hosts[0]"),
        # pub/sub is shared by a Redis's databases: a broadcast would reach every socket twice
        (["redis://a:6379/0", "redis://A:6379/1"], "hosts[1] is the Redis of hosts[0]"),
        (["redis://a/0", {"address": "redis://a:6379/2"}], "hosts[1] is the Redis of hosts[0]"),
        (["redis://a:6379/0", {"socket_timeout": 3}], "hosts[1] must be a Redis URL or a dict"),
        ([42], "hosts[0] must be a Redis URL or a dict"),
        (["redis://a:port/0"], "has no valid port"),
    ],
)
def test_bad_hosts_are_refused_with_the_host_named(hosts: list[object], words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        RedisChannelLayer(hosts=hosts)


def test_the_layer_offers_a_probe_group_per_node() -> None:
    layer = RedisChannelLayer(hosts=["redis://a:1/0", "redis://b:1/0", "redis://c:1/0"])
    assert [node_of(g, 3) for g in layer.node_groups("wsgateway.health.x")] == [0, 1, 2]
    assert RedisChannelLayer(hosts=["redis://a:1/0"]).node_groups("g") == ["g"]


# -- after an outage of some nodes, which sockets can have missed something (sockets_on) ----------


class Grouped:
    """What sockets_on reads of a socket: its membership's groups."""

    def __init__(self, *groups: str) -> None:
        self.groups = groups


class Member:
    def __init__(self, *groups: str) -> None:
        self.membership = Grouped(*groups)


def user_on(node: int, count: int = 3) -> str:
    return next(name for name in NAMES if node_of(name, count) == node)


def test_a_node_that_failed_takes_the_sockets_with_a_group_on_it_and_no_other() -> None:
    every = "wsgateway.all"
    down = next(
        node for node in range(3) if node != node_of(every, 3)
    )  # not the node of every socket's group
    up = [node for node in range(3) if node != down]
    on_down, *on_up = (Member(user_on(node), every) for node in (down, *up))
    unknown = type("Unknown", (), {})()  # no membership: its groups are not known
    joining = Member()  # none yet
    sockets = [on_up[0], on_down, unknown, on_up[1], joining]
    assert sockets_on({down}, sockets, lambda name: node_of(name, 3)) == [on_down, unknown, joining]
    # The group of every socket on a node that failed: every socket can have missed a broadcast.
    assert sockets_on({node_of(every, 3)}, sockets, lambda name: node_of(name, 3)) == sockets
    assert sockets_on(None, sockets, lambda name: node_of(name, 3)) == sockets  # not known which: all
    assert sockets_on(set(), sockets, lambda name: node_of(name, 3)) == [unknown, joining]


def test_on_one_node_every_socket_is_taken_as_before_nodes() -> None:
    sockets = [Member(f"wsgateway.user.{n}", "wsgateway.all") for n in range(50)]
    assert sockets_on({0}, sockets, only_node) == sockets
    assert all(node_of(f"wsgateway.user.{n}", 1) == 0 for n in range(50))


def test_each_group_is_hashed_once_whatever_the_sockets() -> None:
    hashed: list[str] = []

    def node_index(name: str) -> int:
        hashed.append(name)
        return node_of(name, 3)

    sockets = [Member(user_on(1), "wsgateway.all") for _ in range(100)]
    sockets_on({2}, sockets, node_index)
    assert sorted(hashed) == sorted({user_on(1), "wsgateway.all"})

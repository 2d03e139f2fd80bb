"""The emulator's consumer-group state machine, driven with an injected clock (no sleeping)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shardbeat.emulator.state import ALREADY_ALLOC, NOT_ALLOC, TRANSFER, ConsumerUnknown, GroupState

TIMEOUT = 6.0


def sls_group(shards: int = 4, timeout: float = TIMEOUT) -> GroupState[int]:
    return GroupState(range(shards), timeout, register_unknown=False)


def states(group: GroupState[int]) -> dict[int, tuple[str, str | None, str | None]]:
    return {key: (s.name, s.owner, s.next) for key, s in group.shards().items()}


# -- joining, balance, stickiness


def test_first_consumer_gets_every_shard() -> None:
    group = sls_group()
    assert group.heartbeat("c1", [], 0.0) == [0, 1, 2, 3]
    assert all(name == ALREADY_ALLOC for name, _, _ in states(group).values())


def test_newcomer_waits_until_the_owner_releases() -> None:
    group = sls_group()
    group.heartbeat("c1", [], 0.0)
    # c2 joins: the excess of c1 becomes transfer(c1 -> c2); nobody is told to hold it.
    assert group.heartbeat("c2", [], 1.0) == []
    assert states(group)[2] == (TRANSFER, "c1", "c2")
    assert states(group)[3] == (TRANSFER, "c1", "c2")
    # c1 still lists them (it is draining): its answer drops them, the transfer stays pending.
    assert group.heartbeat("c1", [0, 1, 2, 3], 2.0) == [0, 1]
    assert group.heartbeat("c2", [], 2.5) == []
    # c1 stops listing 3 only: 3 moves, 2 is still being released.
    assert group.heartbeat("c1", [0, 1, 2], 3.0) == [0, 1]
    assert states(group)[3] == (ALREADY_ALLOC, "c2", None)
    assert states(group)[2] == (TRANSFER, "c1", "c2")
    assert group.heartbeat("c2", [], 3.5) == [3]
    assert group.heartbeat("c1", [0, 1], 4.0) == [0, 1]
    assert group.heartbeat("c2", [3], 4.5) == [2, 3]


def test_omitting_an_owned_shard_does_not_release_it() -> None:
    group = sls_group()
    group.heartbeat("c1", [], 0.0)
    assert group.heartbeat("c1", [], 1.0) == [0, 1, 2, 3]
    assert group.heartbeat("c1", [0], 2.0) == [0, 1, 2, 3]


def test_balance_within_one_and_extra_consumers_get_nothing() -> None:
    group = sls_group(shards=4)
    for name in ("a", "b", "c", "d", "e"):
        group.heartbeat(name, [], 0.0)
    settle(group, ["a", "b", "c", "d", "e"], 0.0)
    counts = sorted(len(group.assigned(n)) for n in ("a", "b", "c", "d", "e"))
    assert counts == [0, 1, 1, 1, 1]


def test_only_the_excess_moves_as_in_the_cls_example() -> None:
    # cls.md: A{1,2,3}, B{4,5,6} + C -> C gets 3 and 6.
    group: GroupState[int] = GroupState(range(1, 7), TIMEOUT, register_unknown=True)
    group.heartbeat("A", [], 0.0)
    group.heartbeat("B", [], 0.0)
    settle(group, ["A", "B"], 0.0)
    assert group.assigned("A") == [1, 2, 3]
    assert group.assigned("B") == [4, 5, 6]
    group.heartbeat("C", [], 1.0)
    moving = {key: (s.owner, s.next) for key, s in group.shards().items() if s.name == TRANSFER}
    assert moving == {3: ("A", "C"), 6: ("B", "C")}
    settle(group, ["A", "B", "C"], 1.0)
    assert (group.assigned("A"), group.assigned("B"), group.assigned("C")) == ([1, 2], [4, 5], [3, 6])


def test_larger_quota_goes_to_whoever_already_carries_more() -> None:
    group = sls_group(shards=5)
    group.heartbeat("a", [], 0.0)
    group.heartbeat("b", [], 0.0)
    settle(group, ["a", "b"], 0.0)
    assert (len(group.assigned("a")), len(group.assigned("b"))) == (3, 2)
    group.heartbeat("c", [], 1.0)
    settle(group, ["a", "b", "c"], 1.0)
    # 5 over 3: a keeps 2 of its 3, b keeps both; c gets one from a.
    assert len(group.assigned("b")) == 2
    assert set(group.assigned("b")) <= {3, 4}


# -- timeouts


def test_silent_consumer_is_removed_after_timeout_exactly() -> None:
    group = sls_group()
    group.heartbeat("c1", [], 0.0)
    group.heartbeat("c2", [], 0.0)
    settle(group, ["c1", "c2"], 0.0)
    assert group.expire(TIMEOUT - 0.001) == []
    assert group.expire(TIMEOUT) == ["c1", "c2"]
    assert all(name == NOT_ALLOC for name, _, _ in states(group).values())


def test_shards_of_an_expired_consumer_go_to_the_survivors() -> None:
    group = sls_group()
    group.heartbeat("c1", [], 0.0)
    group.heartbeat("c2", [], 0.0)
    settle(group, ["c1", "c2"], 0.0)
    assert group.assigned("c1") == [0, 1]
    group.heartbeat("c2", [2, 3], 5.0)  # c1 stays silent from 0.0
    assert group.heartbeat("c2", [2, 3], 6.5) == [0, 1, 2, 3]
    assert "c1" not in group.consumers()


def test_transfer_target_dies_first_so_the_shard_stays_with_the_owner() -> None:
    group = sls_group()
    group.heartbeat("c1", [], 0.0)
    group.heartbeat("c2", [], 1.0)
    assert states(group)[3] == (TRANSFER, "c1", "c2")
    # c1 keeps listing everything (still draining); c2 never beats again.
    for t in (2.0, 4.0, 6.0):
        assert group.heartbeat("c1", [0, 1, 2, 3], t) == [0, 1]
    assert group.heartbeat("c1", [0, 1, 2, 3], 7.5) == [0, 1, 2, 3]
    assert states(group)[3] == (ALREADY_ALLOC, "c1", None)


def test_transfer_owner_dies_so_the_shard_goes_free_then_to_the_target() -> None:
    group = sls_group()
    group.heartbeat("c1", [], 0.0)
    group.heartbeat("c2", [], 1.0)
    group.heartbeat("c2", [], 5.0)
    assert group.expire(6.0) == ["c1"]
    # Nobody lists the shards any more; the only live consumer gets all of them.
    assert group.heartbeat("c2", [], 6.5) == [0, 1, 2, 3]


# -- unknown consumers


def test_sls_unknown_consumer_with_a_claim_is_refused_and_empty_claim_registers() -> None:
    group = sls_group()
    with pytest.raises(ConsumerUnknown):
        group.heartbeat("ghost", [0], 0.0)
    assert group.consumers() == {}
    assert group.heartbeat("ghost", [], 0.0) == [0, 1, 2, 3]


def test_sls_consumer_forgotten_after_timeout_must_rejoin_empty() -> None:
    group = sls_group()
    group.heartbeat("c1", [], 0.0)
    with pytest.raises(ConsumerUnknown):
        group.heartbeat("c1", [0, 1, 2, 3], 6.0)
    assert group.heartbeat("c1", [], 6.1) == [0, 1, 2, 3]


def test_a_refused_heartbeat_still_hands_expired_shards_to_the_survivors() -> None:
    group = sls_group()
    group.heartbeat("a", [], 0.0)
    group.heartbeat("b", [], 0.0)
    settle(group, ["a", "b"], 0.0)
    group.heartbeat("a", group.assigned("a"), 3.0)
    with pytest.raises(ConsumerUnknown):
        group.heartbeat("b", group.assigned("b"), TIMEOUT)
    assert group.assigned("a") == [0, 1, 2, 3]


def test_cls_unknown_consumer_registers_with_its_claim() -> None:
    group: GroupState[tuple[str, int]] = GroupState([("t", 1), ("t", 2)], TIMEOUT, register_unknown=True)
    assert group.heartbeat("a", [("t", 1)], 0.0) == [("t", 1), ("t", 2)]


def test_late_consumer_gets_back_what_it_claims_if_nobody_took_it() -> None:
    group: GroupState[tuple[str, int]] = GroupState(
        [("t", 1), ("t", 2), ("u", 1), ("u", 2)], TIMEOUT, register_unknown=True
    )
    group.heartbeat("a", [], 0.0)
    group.heartbeat("b", [], 0.0)
    for _ in range(2):
        group.heartbeat("a", group.assigned("a"), 0.0)
        group.heartbeat("b", group.assigned("b"), 0.0)
    held_by_b = group.assigned("b")
    assert len(held_by_b) == 2
    group.heartbeat("a", group.assigned("a"), 3.0)
    # b is exactly one timeout late: removed by this very heartbeat, then re-registered with its claim
    assert group.heartbeat("b", held_by_b, TIMEOUT) == held_by_b


def test_a_newcomer_takes_an_expired_consumers_shards_without_a_detour() -> None:
    group = sls_group()
    group.heartbeat("a", [], 0.0)
    group.heartbeat("b", [], 0.0)
    settle(group, ["a", "b"], 0.0)
    group.heartbeat("a", group.assigned("a"), 3.0)
    assert group.heartbeat("c", [], TIMEOUT) == [2, 3]  # b's, freed by b's expiry in this call


def test_unknown_shard_ids_in_a_claim_are_ignored() -> None:
    group = sls_group()
    assert group.heartbeat("c1", [], 0.0) == [0, 1, 2, 3]
    assert group.heartbeat("c1", [0, 1, 2, 3, 99], 1.0) == [0, 1, 2, 3]


# -- configuration changes


def test_set_timeout_applies_at_once() -> None:
    group = sls_group()
    group.heartbeat("c1", [], 0.0)
    group.set_timeout(2.0, 2.5)
    assert group.consumers() == {}
    with pytest.raises(ValueError):
        group.set_timeout(0, 3.0)


def test_set_shards_adds_free_shards_and_forgets_vanished_ones() -> None:
    group = sls_group(shards=2)
    group.heartbeat("c1", [], 0.0)
    group.heartbeat("c2", [], 0.0)
    settle(group, ["c1", "c2"], 0.0)
    group.set_shards([0, 1, 2, 3], 1.0)
    assert sorted(group.assigned("c1") + group.assigned("c2")) == [0, 1, 2, 3]
    group.set_shards([2, 3], 2.0)
    assert sorted(group.shards()) == [2, 3]
    assert sorted(group.assigned("c1") + group.assigned("c2")) == [2, 3]


def test_deterministic() -> None:
    def run() -> list[list[int]]:
        group = sls_group(shards=7)
        answers = [group.heartbeat(name, [], float(i)) for i, name in enumerate("cabdc")]
        return answers + [group.assigned(n) for n in "abcd"]

    assert run() == run()


# -- model-based: well-behaved clients, random joins, silences and time jumps


@dataclass
class Client:
    """A correct client: holds its last answer plus what it is still releasing, while its lease lasts."""

    view: set[int] = field(default_factory=set)
    releasing: set[int] = field(default_factory=set)
    last_success: float | None = None

    def alive(self, now: float) -> bool:
        return self.last_success is not None and now - self.last_success < TIMEOUT


def settle(group: GroupState[int], names: list[str], now: float, rounds: int = 6) -> None:
    """Every named consumer beats, releasing at once, until nothing is in transfer."""
    for _ in range(rounds):
        for name in names:
            group.heartbeat(name, group.assigned(name), now)
        if not any(s.name == TRANSFER for s in group.shards().values()):
            return
    raise AssertionError(f"transfers never completed: {states(group)}")


def check_structure(group: GroupState[int]) -> None:
    live = group.consumers()
    for key, shard in group.shards().items():
        if shard.owner is not None:
            assert shard.owner in live, (key, shard)
        if shard.next is not None:
            assert shard.next in live and shard.next != shard.owner, (key, shard)


def check_single_holder(clients: dict[str, Client], now: float) -> None:
    holders: dict[int, list[str]] = {}
    for name, client in clients.items():
        if client.alive(now):
            for key in client.view | client.releasing:
                holders.setdefault(key, []).append(name)
    doubled = {key: names for key, names in holders.items() if len(names) > 1}
    assert not doubled, f"two live holders: {doubled}"


CONSUMERS = ["c0", "c1", "c2", "c3", "c4"]
operation = st.one_of(
    st.tuples(st.just("beat"), st.sampled_from(CONSUMERS), st.booleans()),
    st.tuples(st.just("tick"), st.floats(min_value=0.0, max_value=2 * TIMEOUT), st.just(False)),
)


@settings(max_examples=300, deadline=None)
@given(shard_count=st.integers(min_value=1, max_value=9), ops=st.lists(operation, max_size=60))
def test_no_shard_ever_has_two_live_holders_and_the_group_settles_balanced(
    shard_count: int, ops: list[tuple[str, object, bool]]
) -> None:
    group = sls_group(shards=shard_count)
    clients = {name: Client() for name in CONSUMERS}
    now = 0.0
    for kind, arg, released in ops:
        if kind == "tick":
            assert isinstance(arg, float)
            now += arg
        else:
            assert isinstance(arg, str)
            client = clients[arg]
            if not client.alive(now):  # lease ran out: drop everything, rejoin with []
                client.view, client.releasing = set(), set()
            if released:
                client.releasing = set()
            held = client.view | client.releasing
            answer = set(group.heartbeat(arg, sorted(held), now))  # never ConsumerUnknown for them
            client.releasing = held - answer
            client.view = answer
            client.last_success = now
        check_structure(group)
        check_single_holder(clients, now)
    group.expire(now)
    live = list(group.consumers())
    if not live:
        return
    settle(group, live, now)
    counts = [len(group.assigned(name)) for name in live]
    assert max(counts) - min(counts) <= 1
    assert sum(counts) == shard_count
    assert all(s.name == ALREADY_ALLOC for s in group.shards().values())


@settings(max_examples=200, deadline=None)
@given(
    shard_count=st.integers(min_value=1, max_value=12),
    members=st.integers(min_value=1, max_value=5),
    leaving=st.booleans(),
)
def test_membership_changes_move_only_the_excess(shard_count: int, members: int, leaving: bool) -> None:
    group = sls_group(shards=shard_count)
    names = [f"m{i}" for i in range(members)]
    for name in names:
        group.heartbeat(name, [], 0.0)
    settle(group, names, 0.0)
    before = {name: set(group.assigned(name)) for name in names}
    if leaving:
        # the last member goes silent; the others keep beating until it is removed
        survivors = names[:-1]
        settle(group, survivors, TIMEOUT - 1)
        for name in survivors:
            group.heartbeat(name, group.assigned(name), TIMEOUT)
        settle(group, survivors, TIMEOUT)
        for name in survivors:
            assert before[name] <= set(group.assigned(name)), "a survivor lost a shard"
        names = survivors
    else:
        group.heartbeat("newcomer", [], 1.0)
        settle(group, [*names, "newcomer"], 1.0)
        for name in names:
            assert set(group.assigned(name)) <= before[name], "a shard moved between old members"
        names = [*names, "newcomer"]
    if names:
        counts = [len(group.assigned(name)) for name in names]
        assert max(counts) - min(counts) <= 1

from hypothesis import given, settings
from hypothesis import strategies as st

from shardbeat.core.lease import Lease
from shardbeat.core.membership import (
    CONSUMER_UNKNOWN,
    LEASE_EXPIRED,
    STOPPED,
    AssignmentChanged,
    LeaseRenewed,
    Lost,
    Membership,
)

T = "logstore"


def m(*ids: int) -> dict[str, frozenset[int]]:
    return {T: frozenset(ids)} if ids else {}


def fresh(timeout: float = 10, margin: float = 1) -> Membership:
    return Membership(Lease(timeout, margin))


def test_first_success_is_an_assignment_even_when_empty() -> None:
    mem = fresh()
    [ev] = mem.on_success({}, sent_at=0.0, now=0.1)
    assert isinstance(ev, AssignmentChanged)
    assert ev.epoch == 1 and ev.assigned == {} and ev.lease_expires == 9.0


def test_unchanged_answer_renews_the_lease() -> None:
    mem = fresh()
    mem.on_success(m(0, 1), 0.0, 0.1)
    [ev] = mem.on_success(m(0, 1), 2.0, 2.1)
    assert ev == LeaseRenewed(epoch=1, lease_expires=11.0)


def test_diff_added_and_revoked_and_epoch() -> None:
    mem = fresh()
    mem.on_success(m(0, 1, 2), 0.0, 0.1)
    [ev] = mem.on_success(m(1, 2, 3), 2.0, 2.1)
    assert isinstance(ev, AssignmentChanged)
    assert ev.added == m(3) and ev.revoked == m(0) and ev.assigned == m(1, 2, 3) and ev.epoch == 2


def test_revoked_shard_stays_claimed_until_released() -> None:
    mem = fresh()
    mem.on_success(m(0, 1), 0.0, 0.1)
    mem.on_success(m(1), 2.0, 2.1)
    assert mem.claim() == m(0, 1)  # the server finishes the transfer only once we stop listing 0
    mem.release(m(0))
    assert mem.claim() == m(1)


def test_releasing_shard_handed_back_counts_as_added() -> None:
    mem = fresh()
    mem.on_success(m(0, 1), 0.0, 0.1)
    mem.on_success(m(1), 2.0, 2.1)
    [ev] = mem.on_success(m(0, 1), 4.0, 4.1)
    assert isinstance(ev, AssignmentChanged) and ev.added == m(0)
    assert mem.releasing == {}


def test_expiry_loses_everything_and_next_claim_is_empty() -> None:
    mem = fresh()
    mem.on_success(m(0, 1), 0.0, 0.1)
    mem.on_success(m(1), 2.0, 2.1)  # 0 is releasing
    assert mem.expire(10.9) is None
    lost = mem.expire(11.0)
    assert lost == Lost(epoch=3, lost=m(0, 1), reason=LEASE_EXPIRED)
    assert mem.claim() == {}
    assert mem.expire(50.0) is None  # reported once


def test_late_success_after_lapse_reports_lost_first() -> None:
    """A frozen process resumed past its lease writes `lost` before anything else."""
    mem = fresh()
    mem.on_success(m(0), 0.0, 0.1)
    events = mem.on_success(m(0), sent_at=8.5, now=9.5)  # lease lapsed at 9.0, answer renews to 17.5
    assert [type(e) for e in events] == [Lost, AssignmentChanged]
    assert events[1].lease_expires == 17.5  # type: ignore[union-attr]


def test_answer_whose_lease_already_ran_out_is_ignored() -> None:
    mem = fresh()
    events = mem.on_success(m(0), sent_at=0.0, now=9.0)
    assert events == []
    assert mem.claim() == {} and not mem.joined


def test_server_forgetting_us_drops_at_once() -> None:
    mem = fresh()
    mem.on_success(m(2), 0.0, 0.1)
    lost = mem.drop(CONSUMER_UNKNOWN)
    assert lost is not None and lost.lost == m(2) and lost.reason == CONSUMER_UNKNOWN
    assert mem.drop(CONSUMER_UNKNOWN) is None  # nothing left to lose: no record loop
    [ev] = mem.on_success(m(2), 1.0, 1.1)
    assert isinstance(ev, AssignmentChanged) and ev.added == m(2)


def test_drop_before_joining_is_silent() -> None:
    assert fresh().drop(STOPPED) is None


def test_topics_are_kept_apart() -> None:
    mem = fresh()
    mem.on_success({"a": frozenset({1}), "b": frozenset({1, 2})}, 0.0, 0.1)
    [ev] = mem.on_success({"a": frozenset({1, 2}), "b": frozenset({2})}, 1.0, 1.1)
    assert isinstance(ev, AssignmentChanged)
    assert ev.added == {"a": frozenset({2})} and ev.revoked == {"b": frozenset({1})}


# -- properties ---------------------------------------------------------------------------------

shard_sets = st.frozensets(st.integers(0, 5), max_size=6)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("ok"), shard_sets, st.floats(0, 3)),  # answer, call latency
        st.tuples(st.just("fail"), st.just(frozenset()), st.floats(0, 3)),
        st.tuples(st.just("release"), shard_sets, st.just(0.0)),
        st.tuples(st.just("forget"), st.just(frozenset()), st.just(0.0)),
        st.tuples(st.just("jump"), st.just(frozenset()), st.floats(0, 30)),  # frozen process
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(steps)
def test_never_acts_past_the_lease_and_claims_what_it_reports(script: list) -> None:  # type: ignore[type-arg]
    mem = fresh(timeout=10, margin=1)
    now = 0.0
    announced: frozenset[int] = frozenset()  # what downstream believes it owns
    announced_until = -1.0
    epoch = 0
    for kind, ids, dt in script:
        if kind == "ok":
            sent = now
            now += dt
            events = mem.on_success(m(*ids), sent, now)
        elif kind == "fail":
            now += dt
            events = [e for e in [mem.expire(now)] if e]
        elif kind == "release":
            mem.release(m(*ids))
            events = []
        elif kind == "forget":
            events = [e for e in [mem.drop(CONSUMER_UNKNOWN)] if e]
        else:
            now += dt
            events = [e for e in [mem.expire(now)] if e]
        for e in events:
            assert e.epoch >= epoch
            epoch = e.epoch
            if isinstance(e, AssignmentChanged):
                added, revoked = e.added.get(T, frozenset()), e.revoked.get(T, frozenset())
                assert (announced | added) - revoked == e.assigned.get(T, frozenset())
                announced = e.assigned.get(T, frozenset())
                announced_until = e.lease_expires
                assert e.lease_expires > now  # never announce an assignment already past its lease
            elif isinstance(e, LeaseRenewed):
                assert e.lease_expires >= announced_until
                announced_until = e.lease_expires
            else:
                assert e.lost.get(T, frozenset()) >= announced
                announced = frozenset()
        # Whatever downstream was told it owns is still in the claim (nothing silently released).
        if mem.lease.valid(now):
            assert announced <= mem.claim().get(T, frozenset())
        # The engine never holds anything past its lease.
        if mem.lease.expires_at is not None and now >= mem.lease.expires_at:
            assert mem.expire(now) is not None
            announced = frozenset()
            assert mem.claim() == {}


def test_an_unchanged_answer_while_shards_are_releasing_keeps_claiming_them() -> None:
    """The steady-state shortcut applies only with nothing releasing: a revoked shard still being
    released stays in the claim through unchanged answers, and an answer equal to the assignment
    but given in another shape (an empty topic) is still the same assignment."""
    mem = fresh()
    mem.on_success(m(0, 1), 0.0, 0.1)
    mem.on_success(m(0), 1.0, 1.1)  # 1 revoked: releasing until downstream lets go
    [ev] = mem.on_success(m(0), 2.0, 2.1)
    assert ev == LeaseRenewed(epoch=2, lease_expires=11.0)
    assert mem.releasing == m(1) and mem.claim() == m(0, 1)
    mem.release(m(1))
    [ev] = mem.on_success({T: frozenset({0}), "other": frozenset()}, 3.0, 3.1)
    assert ev == LeaseRenewed(epoch=2, lease_expires=12.0)
    assert mem.claim() == m(0) and mem.assigned == m(0)

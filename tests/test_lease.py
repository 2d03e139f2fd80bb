import pytest

from shardbeat.core.lease import Lease, default_margin


def test_lease_runs_from_send_time_minus_margin() -> None:
    lease = Lease(timeout=60, margin=6)
    assert lease.renew(sent_at=100.0) == 154.0
    assert lease.valid(153.999)
    assert not lease.valid(154.0)
    assert lease.expired(154.0)
    assert lease.remaining(150.0) == pytest.approx(4.0)


def test_no_lease_is_neither_valid_nor_expired() -> None:
    lease = Lease(timeout=10, margin=1)
    assert not lease.valid(0.0)
    assert not lease.expired(1e9)
    assert lease.remaining(5.0) == 0.0


def test_late_answer_never_shortens_the_lease() -> None:
    lease = Lease(timeout=10, margin=1)
    lease.renew(sent_at=20.0)
    assert lease.renew(sent_at=15.0) == 29.0


def test_clear_forgets_the_lease() -> None:
    lease = Lease(timeout=10, margin=1)
    lease.renew(0.0)
    lease.clear()
    assert lease.expires_at is None and not lease.expired(100.0)


@pytest.mark.parametrize(("timeout", "margin"), [(60, 6.0), (10, 1.0), (5, 1.0), (2, 0.2), (0.5, 0.05)])
def test_default_margin(timeout: float, margin: float) -> None:
    assert default_margin(timeout) == pytest.approx(margin)
    assert default_margin(timeout) < timeout


@pytest.mark.parametrize("margin", [-1.0, 10.0, 11.0])
def test_margin_must_fit_inside_the_timeout(margin: float) -> None:
    with pytest.raises(ValueError):
        Lease(timeout=10, margin=margin)

"""`shardbeat doctor`: preflight checks for operators, one line per check, PASS / WARN / FAIL.

Per group, in order: config (interval, timeout, margin, loader warnings), instance (runtime dir and
lock), endpoint (DNS, TCP connect, an HTTP answer, timed), credentials (a signed read call: SLS
ListConsumerGroup, CLS DescribeConsumerGroups), clock (offset from the answers' Date header), group
(exists; timeout, order or topics vs the config), heartbeat (only when asked: one heartbeat with an
empty claim, which JOINS the group and makes the server rebalance) and, for CLS, the account's rate
budget. Lines read `STATUS  group-label  check: detail`; secrets never reach them.

Modules: checks (the calls, in order), verdicts (pure judgments), hints (error code -> fix),
reach (DNS and TCP connect with deadlines).
"""

from shardbeat.runtime.doctor.checks import CALL_TIMEOUT, diagnose, run_doctor, summary
from shardbeat.runtime.doctor.verdicts import Check, Status

__all__ = ["CALL_TIMEOUT", "Check", "Status", "diagnose", "run_doctor", "summary"]

"""Checkpoint requests and answers of both providers: the wire as the official SDKs build it
(aliyun-log-python-sdk 0.9.52 get_check_point / update_check_point / get_cursor; the CLS models'
DescribeConsumerOffsets / CommitConsumerOffsets), and every malformed answer is an InvalidResponse."""

from __future__ import annotations

import json

import pytest

from shardbeat.providers.base import Credentials, HttpResponse, ProviderError
from shardbeat.providers.cls import ClsProvider
from shardbeat.providers.sls import SlsProvider

CREDS = Credentials("akid", "secret")
NOW = 1_700_000_000.0


def sls() -> SlsProvider:
    return SlsProvider("cn-hangzhou.log.aliyuncs.com", "proj", "store", "grp", "node-1")


def cls() -> ClsProvider:
    return ClsProvider(None, "ap-guangzhou", "logset", ["ta", "tb"], "grp", "node-1")


def answer(status: int, doc: object, content_type: str = "application/json") -> HttpResponse:
    return HttpResponse(
        status, {"content-type": content_type, "x-log-requestid": "R1"}, json.dumps(doc).encode()
    )


def test_sls_get_check_point_and_get_cursor_requests() -> None:
    p = sls()
    assert p.committed_lookups({"store": frozenset({2, 0})}) == [("store", (0, 2))]
    assert p.committed_lookups({}) == []
    every = p.committed_request("store", (0, 2), "end", NOW, CREDS)
    assert (every.method, every.target, every.body) == ("GET", "/logstores/store/consumergroups/grp", b"")
    one = p.committed_request("store", (3,), "end", NOW, CREDS)
    assert one.target == "/logstores/store/consumergroups/grp?shard=3"
    for start, wire in (("begin", "begin"), ("end", "end"), (1700000000.9, "1700000000")):
        cursor = p.position_request("store", 5, start, NOW, CREDS)
        assert (cursor.method, cursor.target) == ("GET", f"/logstores/store/shards/5?type=cursor&from={wire}")


def test_sls_update_check_point_is_fenced_by_force_success_false() -> None:
    p = sls()
    assert p.commit_batches({("store", 1): "MQ==", ("store", 0): "MA=="}) == [
        {("store", 0): "MA=="},
        {("store", 1): "MQ=="},
    ]
    request = p.commit_request({("store", 1): "MQ=="}, NOW, CREDS)
    assert request.method == "POST"
    assert (
        request.target
        == "/logstores/store/consumergroups/grp?type=checkpoint&consumer=node-1&forceSuccess=false"
    )
    assert request.body == b'{"shard": 1, "checkpoint": "MQ=="}'  # the SDK's json.dumps spacing
    headers = dict(request.headers)
    assert headers["Content-Type"] == "application/json" and headers["Authorization"].startswith("LOG akid:")
    for bad in ({("store", 1): 5}, {("other", 1): "MQ=="}, {("store", 1): "MQ==", ("store", 2): "Mg=="}):
        with pytest.raises(ValueError):
            p.commit_request(bad, NOW, CREDS)


def test_sls_checkpoint_values() -> None:
    p = sls()
    assert p.checkpoint_problem("MTUyNDE1NTM3OTM3MzkwODQ5Ng==") is None
    for bad in (12, "", "not base64!", "x" * 2000, None, "\u00e9"):
        assert p.checkpoint_problem(bad) is not None, bad


def test_sls_answers() -> None:
    p = sls()
    listed = [
        {"shard": 0, "checkpoint": "", "updateTime": 0, "consumer": ""},
        {"shard": 2, "checkpoint": "Mg==", "updateTime": 1, "consumer": "x"},
    ]
    assert p.parse_committed("store", (0, 2, 3), answer(200, listed)) == {0: None, 2: "Mg==", 3: None}
    assert p.parse_position("store", 0, answer(200, {"cursor": "MA=="})) == "MA=="
    for doc in ({"cursor": ""}, {"cursor": 5}, [], {}):
        with pytest.raises(ProviderError) as caught:
            p.parse_position("store", 0, answer(200, doc))
        assert caught.value.code == "InvalidResponse"
    for doc in ({}, [{"shard": "0", "checkpoint": ""}], [{"shard": 0}], [{"shard": -1, "checkpoint": ""}]):
        with pytest.raises(ProviderError) as caught:
            p.parse_committed("store", (0,), answer(200, doc))
        assert caught.value.code == "InvalidResponse"
    refusal = answer(400, {"errorCode": "ConsumerNotMatch", "errorMessage": "no"})
    with pytest.raises(ProviderError) as caught:
        p.parse_commit(refusal)
    assert (caught.value.code, caught.value.status, caught.value.request_id) == (
        "ConsumerNotMatch",
        400,
        "R1",
    )
    p.parse_commit(HttpResponse(200, {}, b""))


def test_cls_describe_consumer_offsets_requests() -> None:
    p = cls()
    assert p.committed_lookups({"tb": frozenset({2, 1}), "ta": frozenset({1})}) == [
        ("ta", (1,)), ("tb", (1,)), ("tb", (2,))
    ]  # fmt: skip
    committed = p.committed_request("tb", (2,), "begin", NOW, CREDS)
    assert dict(committed.headers)["X-TC-Action"] == "DescribeConsumerOffsets"
    assert json.loads(committed.body) == {
        "ConsumerGroup": "grp", "LogsetId": "logset", "TopicId": "tb", "PartitionId": "2",
        "From": "begin", "OffsetType": 0,
    }  # fmt: skip
    at = p.position_request("ta", 1, 1700000000.5, NOW, CREDS)
    assert json.loads(at.body)["From"] == "1700000000" and json.loads(at.body)["OffsetType"] == 1
    with pytest.raises(ValueError):
        p.committed_request("tc", (1,), "end", NOW, CREDS)


def test_cls_commit_consumer_offsets_request() -> None:
    p = cls()
    values = {("tb", 1): 7, ("ta", 2): 9, ("ta", 1): 8}
    assert p.commit_batches(values) == [values]
    request = p.commit_request(values, NOW, CREDS)
    assert dict(request.headers)["X-TC-Action"] == "CommitConsumerOffsets"
    assert json.loads(request.body) == {
        "ConsumerGroup": "grp",
        "Consumer": "node-1",
        "LogsetId": "logset",
        "TopicPartitionOffsetsInfo": [
            {
                "TopicID": "ta",
                "PartitionOffsets": [{"PartitionId": 1, "Offset": 8}, {"PartitionId": 2, "Offset": 9}],
            },
            {"TopicID": "tb", "PartitionOffsets": [{"PartitionId": 1, "Offset": 7}]},
        ],
    }
    for bad in ({("ta", 1): "MQ=="}, {("ta", 1): -1}, {("tc", 1): 1}, {("ta", 1): True}):
        with pytest.raises(ValueError):
            p.commit_request(bad, NOW, CREDS)
    assert p.checkpoint_problem(0) is None
    for bad_value in ("1", -1, True, 2**63, 1.5):
        assert p.checkpoint_problem(bad_value) is not None


def cls_answer(response: dict[str, object]) -> HttpResponse:
    return answer(200, {"Response": {**response, "RequestId": "R"}})


def test_cls_answers() -> None:
    p = cls()
    infos = {
        "TopicPartitionOffsetsInfo": [
            {"TopicID": "ta", "PartitionOffsets": [{"PartitionId": 1, "Offset": 42}]}
        ]
    }
    assert p.parse_committed("ta", (1,), cls_answer(infos)) == {1: 42}
    none = {
        "TopicPartitionOffsetsInfo": [
            {"TopicID": "ta", "PartitionOffsets": [{"PartitionId": 1, "Offset": -1}]}
        ]
    }
    assert p.parse_committed("ta", (1,), cls_answer(none)) == {1: None}  # <= 0: never committed
    assert p.parse_committed("ta", (1,), cls_answer({"TopicPartitionOffsetsInfo": None})) == {1: None}
    assert p.parse_position("ta", 1, cls_answer(infos)) == 42
    text_offset = [{"TopicID": "ta", "PartitionOffsets": [{"PartitionId": 1, "Offset": "4"}]}]
    for bad in (
        none,
        {"TopicPartitionOffsetsInfo": []},
        {"TopicPartitionOffsetsInfo": 3},
        {"TopicPartitionOffsetsInfo": text_offset},
    ):
        with pytest.raises(ProviderError) as caught:
            p.parse_position("ta", 1, cls_answer(bad))
        assert caught.value.code == "InvalidResponse"
    refused = answer(
        200, {"Response": {"Error": {"Code": "FailedOperation", "Message": "not yours"}, "RequestId": "R"}}
    )
    with pytest.raises(ProviderError) as caught:
        p.parse_commit(refused)
    assert caught.value.code == "FailedOperation"
    p.parse_commit(cls_answer({}))

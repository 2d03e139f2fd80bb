"""The official SDKs against a started emulator: proof that what passes here would pass there.

aliyun-log-python-sdk's LogClient and tencentcloud-sdk-python-cls's ClsClient sign, send and parse
exactly as they do against the real services. Every client has a short timeout so that nothing hangs.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from collections.abc import Iterator
from typing import Any

import pytest

from shardbeat.emulator.server import EmulatorServer


class _Sdk:
    """An SDK module imported on first use: every xdist worker imports every test module to collect it,
    and the SDKs take a quarter of a second of CPU to import, which only the worker running these needs.
    (They ship no type information: what they hand over is Any.)"""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_"):  # collection looks for pytest's markers on every module-level object
            raise AttributeError(attr)
        return getattr(importlib.import_module(self._name), attr)


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a parent package is missing
        return False


aliyun_log = _Sdk("aliyun.log")
tc_credential = _Sdk("tencentcloud.common.credential")
cls_client = _Sdk("tencentcloud.cls.v20201016.cls_client")
models = _Sdk("tencentcloud.cls.v20201016.models")
tc_exception = _Sdk("tencentcloud.common.exception.tencent_cloud_sdk_exception")
client_profile = _Sdk("tencentcloud.common.profile.client_profile")
http_profile = _Sdk("tencentcloud.common.profile.http_profile")

pytestmark = [
    pytest.mark.sdk,
    pytest.mark.skipif(
        not (_installed("aliyun.log") and _installed("tencentcloud.cls")),
        reason="the official SDKs are not installed (the sdk extra)",
    ),
]
SDK_TIMEOUT = 5


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    server = EmulatorServer(None).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def fresh(emulator: EmulatorServer) -> None:
    emulator.world.reset()


# -- Alibaba Cloud SLS: aliyun-log-python-sdk


def log_client(emulator: EmulatorServer, key_id: str, secret: str, token: str | None = None) -> Any:
    client = aliyun_log.LogClient(f"http://127.0.0.1:{emulator.port}", key_id, secret, securityToken=token)
    client._isRowIp = True  # the SDK takes only dotted IPs without a port as IP literals
    client.timeout = SDK_TIMEOUT
    return client


def test_sls_heart_beat_balances_two_consumers(emulator: EmulatorServer) -> None:
    client = log_client(emulator, "emulator-akid", "emulator-secret")
    first = client.heart_beat("demo-project", "demo-logstore", "demo-group", "c1", [])
    assert first.get_shards() == [0, 1, 2, 3]
    assert first.get_request_id()
    assert client.heart_beat("demo-project", "demo-logstore", "demo-group", "c2", []).get_shards() == []
    assert client.heart_beat(
        "demo-project", "demo-logstore", "demo-group", "c1", [0, 1, 2, 3]
    ).get_shards() == [
        0,
        1,
    ]
    client.heart_beat("demo-project", "demo-logstore", "demo-group", "c1", [0, 1])
    assert client.heart_beat("demo-project", "demo-logstore", "demo-group", "c2", []).get_shards() == [2, 3]


def test_sls_heart_beat_with_sts_token(emulator: EmulatorServer) -> None:
    client = log_client(emulator, "emulator-sts-akid", "emulator-sts-secret", "emulator-sts-token")
    assert client.heart_beat("demo-project", "demo-logstore", "demo-group", "c1", []).get_shards() == [
        0,
        1,
        2,
        3,
    ]
    tokenless = log_client(emulator, "emulator-sts-akid", "emulator-sts-secret")
    with pytest.raises(aliyun_log.LogException) as caught:
        tokenless.heart_beat("demo-project", "demo-logstore", "demo-group", "c1", [])
    assert (caught.value.get_error_code(), caught.value.resp_status) == ("Unauthorized", 401)


def test_sls_create_list_update_delete_consumer_group(emulator: EmulatorServer) -> None:
    client = log_client(emulator, "emulator-akid", "emulator-secret")
    client.create_consumer_group("demo-project", "demo-logstore", "sdk-group", 20, in_order=True)
    with pytest.raises(aliyun_log.LogException) as caught:
        client.create_consumer_group("demo-project", "demo-logstore", "sdk-group", 20)
    assert caught.value.get_error_code() == "ConsumerGroupAlreadyExist"
    client.update_consumer_group("demo-project", "demo-logstore", "sdk-group", timeout=30)
    groups = client.list_consumer_group("demo-project", "demo-logstore").get_consumer_groups()
    listed = {g.get_consumer_group_name(): (g.get_timeout(), g.is_in_order()) for g in groups}
    assert listed == {"demo-group": (6, False), "sdk-group": (30, True)}
    client.delete_consumer_group("demo-project", "demo-logstore", "sdk-group")
    names = [
        g.get_consumer_group_name()
        for g in client.list_consumer_group("demo-project", "demo-logstore").get_consumer_groups()
    ]
    assert names == ["demo-group"]


def test_sls_wrong_key_and_unknown_key_are_rejected(emulator: EmulatorServer) -> None:
    for key_id, secret, code in (
        ("emulator-akid", "wrong-secret", "SignatureNotMatch"),
        ("nobody", "emulator-secret", "Unauthorized"),
    ):
        client = log_client(emulator, key_id, secret)
        with pytest.raises(aliyun_log.LogException) as caught:
            client.heart_beat("demo-project", "demo-logstore", "demo-group", "c1", [])
        assert (caught.value.get_error_code(), caught.value.resp_status) == (code, 401)


def test_sls_errors_the_sdk_understands(emulator: EmulatorServer) -> None:
    client = log_client(emulator, "emulator-akid", "emulator-secret")
    cases = [
        (("nope-project", "demo-logstore", "demo-group", "c1", []), "ProjectNotExist", 404),
        (("demo-project", "nope", "demo-group", "c1", []), "LogStoreNotExist", 404),
        (("demo-project", "demo-logstore", "nope", "c1", []), "ConsumerGroupNotExist", 404),
        (("demo-project", "demo-logstore", "demo-group", "ghost", [0]), "NotExistConsumerWithBody", 400),
    ]
    for args, code, status in cases:
        with pytest.raises(aliyun_log.LogException) as caught:
            client.heart_beat(*args)
        assert (caught.value.get_error_code(), caught.value.resp_status) == (code, status)
    emulator.world.skew = 16 * 60
    with pytest.raises(aliyun_log.LogException) as caught:
        client.heart_beat("demo-project", "demo-logstore", "demo-group", "c1", [])
    assert caught.value.get_error_code() == "RequestTimeExpired"


# -- Tencent Cloud CLS: tencentcloud-sdk-python-cls


def cls(emulator: EmulatorServer, secret_id: str, secret_key: str, token: str | None = None) -> Any:
    http = http_profile.HttpProfile(
        protocol="http", endpoint=f"127.0.0.1:{emulator.port}", reqTimeout=SDK_TIMEOUT
    )
    credential = tc_credential.Credential(secret_id, secret_key, token)
    return cls_client.ClsClient(credential, "ap-guangzhou", client_profile.ClientProfile(httpProfile=http))


def request(model: type[Any], params: dict[str, Any]) -> Any:
    instance = model()
    instance.from_json_string(json.dumps(params))
    return instance


HEARTBEAT = {
    "ConsumerGroup": "demo-group",
    "Consumer": "c1",
    "LogsetId": "demo-logset",
    "TopicPartitionsInfo": [
        {"TopicID": "demo-topic-a", "Partitions": []},
        {"TopicID": "demo-topic-b", "Partitions": []},
    ],
}


def partitions(response: Any) -> dict[str, list[int]]:
    return {info.TopicID: info.Partitions for info in response.TopicPartitionsInfo}


@pytest.mark.parametrize(
    "credentials",
    [("emulator-secret-id", "emulator-secret-key", None),
     ("emulator-sts-secret-id", "emulator-sts-secret-key", "emulator-cls-token")],
    ids=["permanent", "token"],
)  # fmt: skip
def test_cls_send_consumer_heartbeat_and_create_group(
    emulator: EmulatorServer, credentials: tuple[str, str, str | None]
) -> None:
    client = cls(emulator, *credentials)
    response = client.SendConsumerHeartbeat(request(models.SendConsumerHeartbeatRequest, HEARTBEAT))
    assert response.ConsumerGroup == "demo-group"
    assert partitions(response) == {"demo-topic-a": [1, 2], "demo-topic-b": [1, 2]}
    assert response.RequestId
    second = client.SendConsumerHeartbeat(
        request(models.SendConsumerHeartbeatRequest, {**HEARTBEAT, "Consumer": "c2"})
    )
    assert second.TopicPartitionsInfo == []
    created = client.CreateConsumerGroup(
        request(
            models.CreateConsumerGroupRequest,
            {
                "ConsumerGroup": "sdk_group",
                "Timeout": 10,
                "Topics": ["demo-topic-a"],
                "LogsetId": "demo-logset",
            },
        )
    )
    assert created.ConsumerGroup == "sdk_group"
    with pytest.raises(tc_exception.TencentCloudSDKException) as caught:
        client.CreateConsumerGroup(
            request(
                models.CreateConsumerGroupRequest,
                {
                    "ConsumerGroup": "sdk_group",
                    "Timeout": 10,
                    "Topics": ["demo-topic-a"],
                    "LogsetId": "demo-logset",
                },
            )
        )
    assert "consumer group already exists" in caught.value.get_message()


def test_cls_describe_modify_delete(emulator: EmulatorServer) -> None:
    client = cls(emulator, "emulator-secret-id", "emulator-secret-key")
    client.ModifyConsumerGroup(
        request(
            models.ModifyConsumerGroupRequest,
            {"ConsumerGroup": "demo-group", "Timeout": 12, "LogsetId": "demo-logset"},
        )
    )
    described = client.DescribeConsumerGroups(
        request(models.DescribeConsumerGroupsRequest, {"LogsetId": "demo-logset"})
    )
    infos = [(g.ConsumerGroup, g.Timeout, g.Topics) for g in described.ConsumerGroupsInfo]
    assert infos == [("demo-group", 12, ["demo-topic-a", "demo-topic-b"])]
    client.DeleteConsumerGroup(
        request(models.DeleteConsumerGroupRequest, {"ConsumerGroup": "demo-group", "LogsetId": "demo-logset"})
    )
    with pytest.raises(tc_exception.TencentCloudSDKException) as caught:
        client.SendConsumerHeartbeat(request(models.SendConsumerHeartbeatRequest, HEARTBEAT))
    assert caught.value.get_code() == "FailedOperation"


@pytest.mark.parametrize(
    ("credentials", "code"),
    [
        (("emulator-secret-id", "wrong-key", None), "AuthFailure.SignatureFailure"),
        (("nobody", "emulator-secret-key", None), "AuthFailure.SecretIdNotFound"),
        (("emulator-sts-secret-id", "emulator-sts-secret-key", None), "AuthFailure.TokenFailure"),
        (("emulator-sts-secret-id", "emulator-sts-secret-key", "stale-token"), "AuthFailure.TokenFailure"),
    ],
)
def test_cls_bad_credentials_are_rejected(
    emulator: EmulatorServer, credentials: tuple[str, str, str | None], code: str
) -> None:
    client = cls(emulator, *credentials)
    with pytest.raises(tc_exception.TencentCloudSDKException) as caught:
        client.SendConsumerHeartbeat(request(models.SendConsumerHeartbeatRequest, HEARTBEAT))
    assert caught.value.get_code() == code
    assert caught.value.get_request_id()


def test_cls_expired_timestamp_is_rejected(emulator: EmulatorServer) -> None:
    client = cls(emulator, "emulator-secret-id", "emulator-secret-key")
    emulator.world.skew = -(5 * 60 + 30)  # the SDK signs with the host clock; the server is 5.5 min behind
    with pytest.raises(tc_exception.TencentCloudSDKException) as caught:
        client.SendConsumerHeartbeat(request(models.SendConsumerHeartbeatRequest, HEARTBEAT))
    assert caught.value.get_code() == "AuthFailure.SignatureExpire"
    emulator.world.skew = 4 * 60
    assert client.SendConsumerHeartbeat(request(models.SendConsumerHeartbeatRequest, HEARTBEAT)).RequestId


# -- checkpoints: the SDKs' own calls, with the ownership rules


def test_sls_checkpoints_cursor_and_ownership(emulator: EmulatorServer) -> None:
    client = log_client(emulator, "emulator-akid", "emulator-secret")
    args = ("demo-project", "demo-logstore", "demo-group")
    client.heart_beat(*args, "c1", [])
    client.heart_beat(*args, "c2", [])
    client.heart_beat(*args, "c1", [0, 1, 2, 3])  # c1 gives up 2 and 3: they go to c2
    assert client.heart_beat(*args, "c1", [0, 1]).get_shards() == [0, 1]
    assert client.heart_beat(*args, "c2", []).get_shards() == [2, 3]
    listed = client.get_check_point(*args).get_consumer_group_check_points()
    assert [(c["shard"], c["checkpoint"], c["consumer"]) for c in listed] == [
        (0, "", ""), (1, "", ""), (2, "", ""), (3, "", "")
    ]  # fmt: skip
    emulator.world.log_origin -= 100  # 100 s of data in every shard
    begin = client.get_cursor("demo-project", "demo-logstore", 0, "begin").get_cursor()
    end = client.get_cursor("demo-project", "demo-logstore", 0, "end").get_cursor()
    at = client.get_cursor(
        "demo-project", "demo-logstore", 0, int(emulator.world.log_origin) + 40
    ).get_cursor()
    assert (begin, at) == ("MA==", "NDA=")  # base64 of "0" and "40"
    assert end not in (begin, at)
    # the owner commits with forceSuccess=false; the SDK sends forceSuccess=False
    client.update_check_point(*args, 0, at, consumer="c1", force_success=False)
    got = client.get_check_point(*args, shard=0).get_consumer_group_check_points()
    assert [(c["shard"], c["checkpoint"], c["consumer"]) for c in got] == [(0, at, "c1")]
    assert got[0]["updateTime"] > 0
    # another consumer, an unknown one, a bad cursor, an unknown shard
    cases = [
        ((0, end, "c2"), "ConsumerNotMatch", 400),
        ((0, end, "ghost"), "ConsumerNotExsit", 400),
        ((0, "not base64!", "c1"), "InvalidShardCheckPoint", 400),
        ((9, end, "c1"), "ShardNotExist", 404),
    ]
    for (shard, cursor, consumer), code, status in cases:
        with pytest.raises(aliyun_log.LogException) as caught:
            client.update_check_point(*args, shard, cursor, consumer=consumer, force_success=False)
        assert (caught.value.get_error_code(), caught.value.resp_status) == (code, status)
    assert client.get_check_point(*args, shard=0).get_consumer_group_check_points()[0]["checkpoint"] == at
    # forceSuccess=true (the SDK's default) skips the check: what shardbeat never sends
    client.update_check_point(*args, 0, end, consumer="c2")
    assert client.get_check_point(*args, shard=0).get_consumer_group_check_points()[0]["checkpoint"] == end
    log = [r.to_json() for r in emulator.world.receipts()[0] if r.call.action == "UpdateCheckPoint"]
    assert [(r["consumer"], r["error"], r["owners"]) for r in log][:2] == [
        ("c1", None, {"demo-logstore": {"0": "c1"}}),
        ("c2", "ConsumerNotMatch", None),
    ]


def test_cls_consumer_offsets_and_ownership(emulator: EmulatorServer) -> None:
    client = cls(emulator, "emulator-secret-id", "emulator-secret-key")
    client.SendConsumerHeartbeat(request(models.SendConsumerHeartbeatRequest, HEARTBEAT))
    client.SendConsumerHeartbeat(
        request(models.SendConsumerHeartbeatRequest, {**HEARTBEAT, "Consumer": "c2"})
    )
    emulator.world.log_origin -= 100

    def describe(partition: int, start: str, offset_type: int) -> int:
        params = {
            "ConsumerGroup": "demo-group", "LogsetId": "demo-logset", "TopicId": "demo-topic-a",
            "PartitionId": str(partition), "From": start, "OffsetType": offset_type,
        }  # fmt: skip
        answer = client.DescribeConsumerOffsets(request(models.DescribeConsumerOffsetsRequest, params))
        assert answer.ConsumerGroup == "demo-group" and answer.RequestId
        [info] = answer.TopicPartitionOffsetsInfo
        [offset] = info.PartitionOffsets
        assert (info.TopicID, offset.PartitionId) == ("demo-topic-a", partition)
        return int(offset.Offset)

    assert describe(1, "end", 0) == -1  # never committed
    assert describe(1, "begin", 1) == 0
    assert describe(1, str(int(emulator.world.log_origin) + 40), 1) == 40
    assert describe(1, "end", 1) >= 100

    def commit(consumer: str, offset: int) -> None:
        params = {
            "ConsumerGroup": "demo-group", "Consumer": consumer, "LogsetId": "demo-logset",
            "TopicPartitionOffsetsInfo": [
                {"TopicID": "demo-topic-a", "PartitionOffsets": [{"PartitionId": 1, "Offset": offset}]}
            ],
        }  # fmt: skip
        assert client.CommitConsumerOffsets(request(models.CommitConsumerOffsetsRequest, params)).RequestId

    commit("c1", 42)  # c1 owns every partition (c2 joined after, and c1 has not let any go)
    assert describe(1, "end", 0) == 42
    with pytest.raises(tc_exception.TencentCloudSDKException) as caught:
        commit("c2", 7)
    assert caught.value.get_code() == "FailedOperation"
    assert describe(1, "end", 0) == 42
    log = [r.to_json() for r in emulator.world.receipts()[0] if r.call.action == "CommitConsumerOffsets"]
    assert [(r["consumer"], r["checkpoints"], r["error"]) for r in log] == [
        ("c1", {"demo-topic-a": {"1": 42}}, None),
        ("c2", {"demo-topic-a": {"1": 7}}, "FailedOperation"),
    ]

"""Observability: JSON log lines carry the request id and no personal data; /metrics
exposes the named series and counts what happened; /readyz names a dead backend."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
import requests

from bot import observability
from bot.observability import mask_personal_data

OPENID = "oDF3iY9ffA-hqb2vVvbr7qxf6A0Q"  # the shape of a real openid (28 characters)
PHONE = "13812345678"
ID_NUMBER = "370702199001011234"


@pytest.fixture
def json_log():
    """Every record from now on, as JSON lines (the handler `volbot serve` installs)."""
    stream = io.StringIO()
    handler = observability.json_handler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_masking_keeps_the_shape_and_drops_the_value():
    text = f"user {OPENID} phone {PHONE} id {ID_NUMBER} demo o_demo_res_001 order 20261128001"
    masked = mask_personal_data(text)
    for secret in (OPENID, PHONE, ID_NUMBER, "o_demo_res_001"):
        assert secret not in masked
    assert "138****5678" in masked and "3707**********1234" in masked
    assert "order 20261128001" in masked  # a plain number is not a phone
    assert "volbot.pipeline" in mask_personal_data("volbot.pipeline")


def test_json_lines_have_the_request_id_and_no_personal_data(json_log, base_url):
    # A rejected push logs a line inside the request: it carries the request id we sent.
    resp = requests.post(f"{base_url}/wechat?signature=bad&timestamp=1&nonce=2&openid={OPENID}",
                         data=b"<xml/>", headers={"X-Request-Id": "req-test-0001"}, timeout=10)
    assert resp.status_code == 403
    assert resp.headers["X-Request-Id"] == "req-test-0001"
    lines = [line for line in json_log() if line["logger"] == "volbot.webhook"]
    assert lines and all(line["request_id"] == "req-test-0001" for line in lines)

    # Whoever logs personal data, in the message, its arguments, extra fields or a
    # traceback, the line that comes out has it masked.
    log = logging.getLogger("volbot.test")
    log.info("follower %s gave %s and %s", OPENID, PHONE, ID_NUMBER, extra={"who": OPENID})
    try:
        raise ValueError(f"bad openid {OPENID} with id {ID_NUMBER}")
    except ValueError:
        log.exception("failed for %s", OPENID)
    out = json_log()
    raw = "\n".join(json.dumps(line, ensure_ascii=False) for line in out)
    for secret in (OPENID, PHONE, ID_NUMBER):
        assert secret not in raw
    tail = out[-2:]
    assert tail[0]["who"].startswith("o***") and "138****5678" in tail[0]["msg"]
    assert "ValueError" in tail[1]["exc"] and "3707**********1234" in tail[1]["exc"]
    assert all({"ts", "level", "logger", "msg", "request_id"} <= set(line) for line in out)


def test_a_fresh_request_id_is_made_when_none_comes(base_url):
    first = requests.get(f"{base_url}/healthz", timeout=10).headers["X-Request-Id"]
    second = requests.get(f"{base_url}/healthz", timeout=10).headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{16}", first) and first != second


def sample(text: str, name: str, **labels) -> float:
    """The value of one series in a Prometheus text exposition (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        metric, _, label_text = series.partition("{")
        got = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
        if metric == name and got == want:
            return float(value)
    return 0.0


def test_metrics_expose_the_named_series_and_count_requests(wechat_plain, base_url, svc):
    before = requests.get(f"{base_url}/metrics", timeout=10).text
    for name in ("volbot_requests", "volbot_reply_seconds", "volbot_dedup_hits", "volbot_lock_waits",
                 "volbot_queue_depth", "volbot_pushes", "volbot_wechat_api_errors", "volbot_busy_replies"):
        assert re.search(rf"^# TYPE {name}(_total)? ", before, re.M), name

    fields = wechat_plain.sender.text("o_metrics_user", "菜单")
    assert wechat_plain.send(fields).status == 200
    assert wechat_plain.send(fields).status == 200  # WeChat's retry: a dedup hit
    after = requests.get(f"{base_url}/metrics", timeout=10).text
    assert sample(after, "volbot_requests_total", outcome="reply") == sample(before, "volbot_requests_total",
                                                                             outcome="reply") + 2
    assert sample(after, "volbot_dedup_hits_total") == sample(before, "volbot_dedup_hits_total") + 1
    assert sample(after, "volbot_reply_seconds_count") == sample(before, "volbot_reply_seconds_count") + 2
    assert sample(after, "volbot_queue_depth", queue="volbot-pushes") == 0

    bad = requests.post(f"{base_url}/wechat?signature=bad&timestamp=1&nonce=2", data=b"<xml/>", timeout=10)
    assert bad.status_code == 403
    later = requests.get(f"{base_url}/metrics", timeout=10).text
    assert sample(later, "volbot_requests_total", outcome="rejected_403") == sample(
        after, "volbot_requests_total", outcome="rejected_403") + 1


def test_pushes_by_state_and_wechat_errors_by_code(api, emulator, base_url, svc):
    from pushes.client import WeChatError
    from store.outbox import notify

    with svc.db.transaction() as session:
        notify(session, openid="o_metrics_push", kind="bus_visit", title="巴士", fields={}, dedup_key="m-1")
    emulator.fault(endpoint="template", errcode=45009, times=1)
    with pytest.raises(WeChatError):
        api.send_template("o_metrics_push", "tpl", {"thing1": {"value": "x"}})
    text = requests.get(f"{base_url}/metrics", timeout=10).text
    assert sample(text, "volbot_pushes", state="pending") == 1
    assert sample(text, "volbot_wechat_api_errors_total", endpoint="message/template/send", code="45009") == 1


def test_readyz_names_a_dead_redis(base_url, svc, monkeypatch):
    assert requests.get(f"{base_url}/readyz", timeout=10).json() == {"status": "ok", "database": "ok", "redis": "ok"}

    def down():
        raise ConnectionError("redis gone")

    monkeypatch.setattr(svc.redis, "ping", down)
    resp = requests.get(f"{base_url}/readyz", timeout=10)
    assert resp.status_code == 503 and resp.json()["redis"].startswith("down")

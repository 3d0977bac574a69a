"""The shell works end to end: follow → welcome and menu; 菜单 and 帮助 answer."""


def test_follow_then_menu_and_help(wechat):
    reply = wechat.event("o_smoke", "subscribe")
    assert "欢迎关注" in reply and "1. 预约志愿服务" in reply
    assert "请回复数字选择服务" in wechat.say("o_smoke", "菜单")
    assert "使用说明" in wechat.say("o_smoke", "帮助")


def test_health(base_url):
    import requests

    assert requests.get(base_url + "/healthz").json()["status"] == "ok"
    ready = requests.get(base_url + "/readyz")
    assert ready.status_code == 200 and ready.json()["database"] == "ok"

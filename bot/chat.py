"""`volbot chat`: a terminal conversation with a running webhook, as WeChat would hold it.

Lines you type are sent as text messages; a few slash commands send the other kinds:
/follow [scene], /unfollow, /scan SCENE, /click KEY, /loc LAT LNG [label], /voice TEXT, /quit.
"""

from __future__ import annotations

import shlex

import requests

from bot.sender import WeChatSender

HELP = "/follow [scene]  /unfollow  /scan SCENE  /click KEY  /loc LAT LNG [label]  /voice TEXT  /quit"


def build(sender: WeChatSender, openid: str, line: str) -> dict | None:
    if not line.startswith("/"):
        return sender.text(openid, line)
    parts = shlex.split(line[1:]) or [""]
    cmd, args = parts[0], parts[1:]
    if cmd == "follow":
        return sender.event(openid, "subscribe", f"qrscene_{args[0]}" if args else None)
    if cmd == "unfollow":
        return sender.event(openid, "unsubscribe")
    if cmd == "scan" and args:
        return sender.event(openid, "SCAN", args[0])
    if cmd == "click" and args:
        return sender.event(openid, "CLICK", args[0])
    if cmd == "loc" and len(args) >= 2:
        return sender.location(openid, float(args[0]), float(args[1]), " ".join(args[2:]))
    if cmd == "voice" and args:
        return sender.voice(openid, " ".join(args))
    return None


def run_chat(config, url: str, openid: str) -> None:
    sender = WeChatSender(config.wechat_token, config.wechat_appid, config.wechat_aes_key)
    http = requests.Session()
    mode = "safe (AES)" if config.wechat_aes_key else "plain"
    print(f"Chatting with {url} as {openid} in {mode} mode. {HELP}")
    while True:
        try:
            line = input("你> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return
        if not line:
            continue
        if line == "/quit":
            return
        fields = build(sender, openid, line)
        if fields is None:
            print(HELP)
            continue
        try:
            sent = sender.post(http, url, fields)
        except requests.RequestException as e:
            print(f"（连接失败：{e}）")
            continue
        if sent.status != 200:
            print(f"（HTTP {sent.status}: {sent.body[:200]}）")
        elif sent.body == "success" or not sent.body:
            print("（无回复）")
        else:
            print("机器人>", sent.text.replace("\n", "\n        "))

"""Template pushes as the phone receives them: read back from the WeChat API emulator's
record of what the worker sent (the emulator stands in for WeChat's servers, so what it
recorded is exactly what a real phone would have been shown).
"""

from __future__ import annotations

import requests

from bot.config import DEFAULT_API_BASE


def emulator_root(api_base: str) -> str | None:
    """The emulator's root URL from WECHAT_API_BASE (…/cgi-bin/), or None for real WeChat."""
    if not api_base or api_base.rstrip("/") == DEFAULT_API_BASE.rstrip("/"):
        return None
    root = api_base.rstrip("/")
    if root.endswith("/cgi-bin"):
        root = root[: -len("/cgi-bin")]
    return root


def pushes_for(config, openid: str, since: str) -> dict:
    root = emulator_root(config.wechat_api_base)
    if root is None:
        return {"ok": False, "error": "no emulator configured", "pushes": [], "cursor": since}
    try:
        resp = requests.get(f"{root}/_emulator/sent", params={"touser": openid, "since": since},
                            timeout=3)
    except requests.RequestException as e:
        return {"ok": False, "error": f"emulator unreachable: {type(e).__name__}", "pushes": [],
                "cursor": since}
    if resp.status_code != 200:
        return {"ok": False, "error": f"emulator HTTP {resp.status_code}", "pushes": [], "cursor": since}
    data = resp.json()
    return {"ok": True, "pushes": data.get("sent", []), "cursor": str(data.get("cursor", since))}

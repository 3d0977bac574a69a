"""THE WeChat API client: the only module that calls WeChat's server API.

It wraps wechatpy's `WeChatClient` and fixes what matters for many workers on many hosts
(research/wechat.md §2.1, §3.3):

- the access token lives in Redis, shared by every process; when it is missing one
  process fetches it under a Redis lock while the others wait and then re-read it
  (double-check), so a cold start of N workers makes one fetch, not N;
- `stable_token` (normal mode) is preferred to the legacy `/token`, which invalidates
  the token every other process holds;
- wechatpy's `auto_retry` is off (it recurses without limit on a persistent 40001); a call
  that gets 40001/40014/42001 refreshes the token once and is retried once, no more;
- template messages pass `client_msg_id` (wechatpy's `send_template` cannot), so WeChat
  drops a resend of the same push within 10 minutes;
- the JS-SDK's `jsapi_ticket` is shared the same way as the access token (one `SharedSecret`
  per kind, one fetch under one lock), and `jsapi_signature` signs a page's `wx.config`;
- web-page OAuth (网页授权, `snsapi_base`): `oauth_authorize_url` and `openid_for_code`, through
  wechatpy's `WeChatOAuth` pointed at the same host as `WECHAT_API_BASE` (the emulator in tests
  and the demo; open.weixin.qq.com and api.weixin.qq.com for the official base).

The base URL comes from `WECHAT_API_BASE`: tests and the demo point it at the emulator.
"""

from __future__ import annotations

import json
import logging
import secrets
import time

import redis
from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException, WeChatOAuthException
from wechatpy.oauth import WeChatOAuth
from wechatpy.utils import WeChatSigner

from store.ephemeral import PREFIX, LockTimeout, UserLock
from telemetry.metrics import count_api_error

log = logging.getLogger("volbot.wechat")

TOKEN_ERRORS = (40001, 40014, 42001)
OFFICIAL_BASE = "https://api.weixin.qq.com/cgi-bin/"


class WeChatError(Exception):
    """A WeChat API call failed: `code` is WeChat's errcode (None for a network or HTTP
    failure, which is always worth retrying)."""

    def __init__(self, code: int | None, message: str = ""):
        super().__init__(f"{code}: {message}" if code is not None else message)
        self.code = code
        self.message = message


class TokenStore:
    """A shared credential in Redis (the access token, or with `kind="ticket:jsapi"` the
    JS-SDK ticket): `value` with a TTL a little shorter than its life."""

    def __init__(self, client: redis.Redis, appid: str, kind: str = "token"):
        self.client = client
        self.key = f"{PREFIX}wechat:{kind}:{appid}"
        self.lock_name = f"wechat-{kind}:{appid}"

    def get(self) -> str | None:
        raw = self.client.get(self.key)
        return raw.decode() if raw else None

    def put(self, token: str, expires_in: int) -> None:
        # Refresh well before WeChat's expiry; stable_token lives >= 300 s after issue.
        margin = 300 if expires_in > 600 else expires_in // 3
        self.client.set(self.key, token, ex=max(1, int(expires_in) - margin))

    def discard(self, token: str) -> None:
        """Forget `token` only if it is still the shared one (another worker may have
        replaced it already)."""
        self.client.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
                         1, self.key, token)


class ApiClient(WeChatClient):
    """wechatpy's client with a shared, locked, bounded-retry token (see module doc)."""

    def __init__(self, appid: str, secret: str, redis_client: redis.Redis, *, api_base: str = OFFICIAL_BASE,
                 timeout: float = 5.0, lock_wait: float = 10.0):
        super().__init__(appid, secret, timeout=timeout, auto_retry=False)
        self.API_BASE_URL = api_base if api_base.endswith("/") else api_base + "/"
        self.tokens = TokenStore(redis_client, appid)
        self.tickets = TokenStore(redis_client, appid, kind="ticket:jsapi")
        self.redis = redis_client
        self.lock_wait = lock_wait
        self.fetches = 0  # tokens this instance fetched (for tests and logs)

    # ---- the token ------------------------------------------------------------------------

    @property
    def access_token(self) -> str:
        token = self.tokens.get()
        return token if token else self.fetch_access_token()

    def fetch_access_token(self, stale: str | None = None) -> str:
        """A valid token: fetched by one process at a time; the others wait and re-read.
        `stale` is a token WeChat just refused, which must not be handed out again."""

        def fetch() -> tuple[str, int]:
            result = self._stable_token(force=False)
            if result["access_token"] == stale:
                # Normal mode returned the token WeChat just refused: force a new one.
                result = self._stable_token(force=True)
            return result["access_token"], int(result.get("expires_in", 7200))

        return self._shared(self.tokens, fetch, stale)

    def _shared(self, store: TokenStore, fetch, stale: str | None = None) -> str:
        """The credential in `store`, or one `fetch()` (-> value, expires_in) under the
        store's Redis lock; processes that waited re-read what the first one stored."""
        lock = UserLock(self.redis, store.lock_name, ttl_ms=int(self.lock_wait * 1000))
        try:
            lock.acquire(timeout=self.lock_wait)
        except LockTimeout:
            raise WeChatError(None, f"timed out waiting for the {store.lock_name} lock")
        try:
            current = store.get()
            if current and current != stale:
                return current  # someone else fetched it while we waited
            value, expires_in = fetch()
            self.fetches += 1
            store.put(value, expires_in)
            return value
        finally:
            lock.release()

    def _stable_token(self, force: bool) -> dict:
        body = {"grant_type": "client_credential", "appid": self.appid, "secret": self.secret,
                "force_refresh": force}
        try:
            res = self._http.post(self.API_BASE_URL + "stable_token", data=json.dumps(body), timeout=self.timeout)
            res.raise_for_status()
            result = res.json()
        except Exception as e:  # network, HTTP or JSON: all "try again later"
            count_api_error(self.redis, "stable_token", None)
            raise WeChatError(None, f"stable_token: {type(e).__name__}") from e
        if result.get("errcode"):
            count_api_error(self.redis, "stable_token", int(result["errcode"]))
            raise WeChatError(int(result["errcode"]), result.get("errmsg", ""))
        return result

    # ---- every call: one bounded token retry ------------------------------------------------

    def _request(self, method, url_or_endpoint, **kwargs):
        params = dict(kwargs.pop("params", None) or {})
        token = params.get("access_token") or self.access_token
        for attempt in (1, 2):
            params["access_token"] = token
            try:
                return super()._request(method, url_or_endpoint, params=dict(params), **kwargs)
            except WeChatClientException as e:
                code = int(e.errcode) if e.errcode is not None else None
                count_api_error(self.redis, str(url_or_endpoint), code)  # /metrics, all workers
                if code in TOKEN_ERRORS and attempt == 1:
                    log.info("access token refused (%s); refreshing once", code)
                    self.tokens.discard(token)
                    token = self.fetch_access_token(stale=token)
                    continue
                raise WeChatError(code, str(e.errmsg or "")) from e
            except WeChatError:
                raise
            except Exception as e:  # requests errors: transient by nature
                count_api_error(self.redis, str(url_or_endpoint), None)
                raise WeChatError(None, f"{type(e).__name__}") from e
        raise AssertionError("unreachable")

    # ---- the calls the project makes ----------------------------------------------------------

    def send_template(self, openid: str, template_id: str, data: dict, *, url: str | None = None,
                      client_msg_id: str | None = None) -> str:
        """Send a template message; returns WeChat's msgid."""
        body = {"touser": openid, "template_id": template_id, "data": data}
        if url:
            body["url"] = url
        if client_msg_id:
            body["client_msg_id"] = client_msg_id
        result = self.post("message/template/send", data=body)
        return str(result.get("msgid", ""))

    def send_text(self, openid: str, content: str) -> None:
        """A customer-service text (only inside the user's 48-hour / 5-message window)."""
        self.post("message/custom/send", data={"touser": openid, "msgtype": "text", "text": {"content": content}})

    def download_media(self, media_id: str) -> bytes:
        """A temporary media file (a voice message's audio), by its MediaId (media/get)."""
        res = self.get("media/get", params={"media_id": media_id})
        if isinstance(res, dict):  # JSON without an errcode: no media in it
            raise WeChatError(None, "media/get: no media in the answer")
        return res.content

    def send_notice(self, openid: str, template_id: str, data: dict, page: str | None = None) -> None:
        """A subscription notice (订阅通知, bizsend)."""
        body = {"touser": openid, "template_id": template_id, "data": data}
        if page:
            body["page"] = page
        self.post("message/subscribe/bizsend", data=body)

    def create_tag(self, name: str) -> int:
        """A user tag (tags/create) for a mass send's audience; returns its id."""
        return int(self.post("tags/create", data={"tag": {"name": name}})["tag"]["id"])

    def tag_users(self, tag_id: int, openids: list[str]) -> None:
        """Put up to 50 followers under `tag_id` (tags/members/batchtagging)."""
        self.post("tags/members/batchtagging", data={"openid_list": openids, "tagid": tag_id})

    def delete_tag(self, tag_id: int) -> None:
        self.post("tags/delete", data={"tag": {"id": tag_id}})

    def mass_send_text(self, tag_id: int, text: str, client_msg_id: str) -> str:
        """群发 a text to a tag (message/mass/sendall); WeChat sends one `clientmsgid` once
        in 24 h and answers a repeat with 45065 and the first send's msg_id."""
        body = {"filter": {"is_to_all": False, "tag_id": tag_id}, "msgtype": "text", "text": {"content": text},
                "send_ignore_reprint": 0, "clientmsgid": client_msg_id}
        try:
            result = self.post("message/mass/sendall", data=body)
        except WeChatError as e:
            if e.code == 45065:  # sent before (a worker lost after WeChat took it)
                return ""
            raise
        return str(result.get("msg_id", ""))

    def create_menu(self, menu: dict) -> None:
        self.post("menu/create", data=menu)

    def get_menu(self) -> dict:
        return self.get("menu/get")

    def create_qr_ticket(self, scene: str, *, permanent: bool = True, expire_seconds: int = 2_592_000) -> dict:
        """A QR ticket for a string scene ("cm:KW001"); returns {ticket, url, image_url}."""
        body = {"action_name": "QR_LIMIT_STR_SCENE" if permanent else "QR_STR_SCENE",
                "action_info": {"scene": {"scene_str": scene}}}
        if not permanent:
            body["expire_seconds"] = expire_seconds
        result = self.post("qrcode/create", data=body)
        return {"ticket": result["ticket"], "url": result.get("url", ""),
                "image_url": self.qr_image_url(result["ticket"])}

    def qr_image_url(self, ticket: str) -> str:
        from urllib.parse import quote

        base = "https://mp.weixin.qq.com/cgi-bin/" if self.API_BASE_URL == OFFICIAL_BASE else self.API_BASE_URL
        return f"{base}showqrcode?ticket={quote(ticket)}"


    # ---- web pages: the JS-SDK ticket and OAuth --------------------------------------------------

    @property
    def jsapi_ticket(self) -> str:
        """The JS-SDK ticket (ticket/getticket?type=jsapi), shared in Redis like the token."""
        return self.tickets.get() or self._shared(self.tickets, self._fetch_jsapi_ticket)

    def _fetch_jsapi_ticket(self) -> tuple[str, int]:
        result = self.get("ticket/getticket", params={"type": "jsapi"})
        if not result.get("ticket"):
            raise WeChatError(None, "ticket/getticket: no ticket in the answer")
        return result["ticket"], int(result.get("expires_in", 7200))

    def jsapi_signature(self, url: str, *, timestamp: int | None = None, noncestr: str | None = None) -> dict:
        """What a page passes to `wx.config` for `url` (without its #fragment)."""
        timestamp = int(time.time()) if timestamp is None else timestamp
        noncestr = noncestr or secrets.token_hex(8)
        signer = WeChatSigner(delimiter=b"&")
        signer.add_data(f"noncestr={noncestr}", f"jsapi_ticket={self.jsapi_ticket}", f"timestamp={timestamp}",
                        f"url={url.split('#', 1)[0]}")
        return {"appId": self.appid, "timestamp": timestamp, "nonceStr": noncestr, "signature": signer.signature}

    def _oauth(self, redirect_uri: str = "", state: str = "") -> WeChatOAuth:
        oauth = _OAuth(self.appid, self.secret, redirect_uri, scope="snsapi_base", state=state)
        oauth.timeout = self.timeout
        if self.API_BASE_URL != OFFICIAL_BASE:  # the emulator answers both on its own host
            root = self.API_BASE_URL.rstrip("/").removesuffix("/cgi-bin") + "/"
            oauth.API_BASE_URL, oauth.OAUTH_BASE_URL = root, root + "connect/"
        return oauth

    def oauth_authorize_url(self, redirect_uri: str, state: str) -> str:
        """Where a page sends the browser to learn who it is (snsapi_base: no prompt)."""
        return self._oauth(redirect_uri, state).authorize_url

    def openid_for_code(self, code: str) -> str:
        """Exchange the redirect's single-use `code` (sns/oauth2/access_token) for the openid.
        WeChat refuses an unknown or expired code with 40029 and a used one with 40163."""
        try:
            return str(self._oauth().fetch_access_token(code)["openid"])
        except WeChatOAuthException as e:
            code_ = int(e.errcode) if e.errcode is not None else None
            count_api_error(self.redis, "sns/oauth2/access_token", code_)
            raise WeChatError(code_, str(e.errmsg or ""))
        except (KeyError, ValueError) as e:
            raise WeChatError(None, f"sns/oauth2/access_token: {type(e).__name__}")
        except Exception as e:  # noqa: BLE001 - requests errors: transient by nature
            count_api_error(self.redis, "sns/oauth2/access_token", None)
            raise WeChatError(None, type(e).__name__)


class _OAuth(WeChatOAuth):
    """wechatpy's OAuth helper with a timeout on its calls (it sets none)."""

    timeout = 5.0

    def _request(self, method, url_or_endpoint, **kwargs):
        kwargs.setdefault("timeout", self.timeout)
        return super()._request(method, url_or_endpoint, **kwargs)


def client_for(config, redis_client: redis.Redis) -> ApiClient:
    """The API client for this configuration (appid, secret, WECHAT_API_BASE)."""
    return ApiClient(config.wechat_appid, config.wechat_secret, redis_client, api_base=config.wechat_api_base)


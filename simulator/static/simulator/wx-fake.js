// A stand-in for WeChat's JS-SDK inside the simulator's in-app browser. The simulator hands
// it to a page it opened (pages.js: window.volbotPages.attach) once the page has loaded.
// wx.config is checked by the server against the emulator's jsapi_ticket, as WeChat checks
// it; getLocation answers with the location last picked on the simulator's map (or the
// first place of the district); scanQRCode opens the simulator's scan sheet and, as WeChat
// does with needResult 0, sends the scan to the account; wx-open-subscribe becomes a
// button that reports consent the way WeChat's open tag does (a "success" event).
(function () {
  "use strict";

  window.VolbotFakeWx = function (host, win) {
    let verified = null;
    const readyCallbacks = [], errorCallbacks = [];
    const wx = {
      config(cfg) {
        verified = fetch(host.api + "/jssdk-check", {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ url: win.location.href.split("#")[0], config: cfg }),
        }).then((r) => r.json()).then((res) => {
          const list = res.ok ? readyCallbacks : errorCallbacks;
          list.forEach((cb) => cb(res.ok ? undefined : { errMsg: "config:invalid signature" }));
          host.note(res.ok ? "（JS-SDK 签名校验通过）" : "（JS-SDK 签名无效：" + (res.error || "") + "）");
          return res.ok;
        }).catch(() => false);
      },
      ready(cb) { if (verified) verified.then((ok) => { if (ok) cb(); }); else readyCallbacks.push(cb); },
      error(cb) { errorCallbacks.push(cb); },
      getLocation(opts) {
        const at = host.location();
        setTimeout(() => opts.success && opts.success({ latitude: at.lat, longitude: at.lng, accuracy: 30,
                                                        errMsg: "getLocation:ok" }), 0);
      },
      scanQRCode(opts) {
        host.scan((scene) => {
          if (opts.needResult && opts.success) opts.success({ resultStr: scene, errMsg: "scanQRCode:ok" });
        }, !opts.needResult);
      },
    };
    // The open tag: WeChat draws its own button; here one that says what was agreed to.
    win.document.querySelectorAll("wx-open-subscribe").forEach((tag) => {
      const button = win.document.createElement("button");
      button.type = "button";
      button.textContent = "订阅提醒（模拟）";
      button.addEventListener("click", () => {
        const ids = (tag.getAttribute("template") || "").split(",").filter(Boolean);
        const details = {};
        ids.forEach((id) => { details[id] = JSON.stringify({ status: "accept" }); });
        // WeChat reports the tap to the account's webhook (a subscribe event): here the
        // emulator does, asked by the simulator; the page hears "success" as from WeChat.
        fetch(host.api + "/subscribe-tap", {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ openid: host.openid(), template_ids: ids }),
        }).then((r) => r.json()).then((res) => {
          if (!res.ok) { host.note("（订阅失败：" + (res.error || "") + "）"); return; }
          tag.dispatchEvent(new win.CustomEvent("success", { detail: { subscribeDetails: JSON.stringify(details) } }));
          host.note("（已同意接收订阅通知）");
        });
      });
      tag.appendChild(button);
    });
    return wx;
  };
})();

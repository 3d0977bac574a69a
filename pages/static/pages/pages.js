/* The pages' only script (no inline script anywhere, CSP-friendly). Everything works without
   it; with WeChat's JS-SDK (inside WeChat) or the simulator's stand-in, buttons marked
   data-wx="getLocation" / "scanQRCode" use it. The real SDK is loaded only inside WeChat. */
(function () {
  "use strict";
  var body = document.body;
  var configured = null;

  function inWeChat() { return /MicroMessenger/i.test(navigator.userAgent || ""); }

  function loadSdk() {
    return new Promise(function (resolve) {
      if (window.wx) { resolve(window.wx); return; }
      if (!inWeChat() || !body.dataset.sdk) { resolve(null); return; }
      var s = document.createElement("script");
      s.src = body.dataset.sdk;
      s.onload = function () { resolve(window.wx || null); };
      s.onerror = function () { resolve(null); };
      document.head.appendChild(s);
    });
  }

  /* wx.config once per page, signed by the server for this page's URL. */
  function ready() {
    if (configured) { return configured; }
    configured = loadSdk().then(function (wx) {
      if (!wx || !body.dataset.jssdk) { return null; }
      var url = location.href.split("#")[0];
      return fetch(body.dataset.jssdk + "?url=" + encodeURIComponent(url), {credentials: "same-origin"})
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (cfg) {
          if (!cfg) { return null; }
          return new Promise(function (resolve) {
            wx.config({debug: false, appId: cfg.appId, timestamp: cfg.timestamp, nonceStr: cfg.nonceStr,
                       signature: cfg.signature, jsApiList: cfg.jsApiList, openTagList: cfg.openTagList});
            wx.ready(function () { resolve(wx); });
            wx.error(function () { resolve(null); });
          });
        }).catch(function () { return null; });
    });
    return configured;
  }

  function gotoWith(form, fields) {
    Object.keys(fields).forEach(function (k) {
      var input = form.querySelector("[name=" + k + "]");
      if (input) { input.value = fields[k]; }
    });
    form.submit();
  }

  /* 附近: the user's location from wx.getLocation, else the browser's, else the form as typed. */
  document.querySelectorAll("[data-wx=getLocation]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var form = button.form;
      ready().then(function (wx) {
        if (wx) {
          wx.getLocation({type: "gcj02", success: function (res) {
            gotoWith(form, {lat: res.latitude, lng: res.longitude});
          }});
        } else if (navigator.geolocation) {
          navigator.geolocation.getCurrentPosition(function (pos) {
            gotoWith(form, {lat: pos.coords.latitude, lng: pos.coords.longitude});
          }, function () { form.querySelector("[name=lat]").focus(); });
        }
      });
    });
  });

  /* 签到: wx.scanQRCode gives the code's text, which the form sends as if typed. */
  document.querySelectorAll("[data-wx=scanQRCode]").forEach(function (button) {
    ready().then(function (wx) {
      if (!wx) { return; }
      button.hidden = false;
      button.addEventListener("click", function () {
        wx.scanQRCode({needResult: 1, scanType: ["qrCode"], success: function (res) {
          gotoWith(button.form, {code: res.resultStr});
        }});
      });
    });
  });

  /* The consent button (wx-open-subscribe) is shown only where the SDK could be configured. */
  document.querySelectorAll("[data-wx=subscribe]").forEach(function (box) {
    ready().then(function (wx) { if (wx) { box.hidden = false; } });
  });
})();

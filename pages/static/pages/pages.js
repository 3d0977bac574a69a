/* The pages' only script (no inline script anywhere: CSP-friendly). Every page works
   without it. With WeChat's JS-SDK (loaded here only inside WeChat's in-app browser) or a
   stand-in handed over later (window.volbotPages.attach: the simulator does), the elements
   marked data-wx use it:
     getLocation  附近: the user's location (else the browser's, else the list as typed)
     scanQRCode   签到: WeChat's scanner; the scan goes to the account as a chat scan does
     subscribe    the consent open tag (wx-open-subscribe), shown only where it can work */
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

  function submitWith(form, fields) {
    Object.keys(fields).forEach(function (k) {
      var input = form.querySelector("[name=" + k + "]");
      if (input) { input.value = fields[k]; }
    });
    form.submit();
  }

  function once(el) {
    if (el.dataset.bound) { return false; }
    el.dataset.bound = "yes";
    return true;
  }

  function setup() {
    document.querySelectorAll("[data-wx=getLocation]").forEach(function (button) {
      if (!window.wx && !inWeChat() && !navigator.geolocation) { return; }
      button.hidden = false;
      if (!once(button)) { return; }
      button.addEventListener("click", function () {
        var form = button.form;
        ready().then(function (wx) {
          if (wx) {
            wx.getLocation({type: "gcj02", success: function (res) {
              submitWith(form, {lat: res.latitude, lng: res.longitude});
            }});
          } else if (navigator.geolocation) {
            navigator.geolocation.getCurrentPosition(function (pos) {
              submitWith(form, {lat: pos.coords.latitude, lng: pos.coords.longitude});
            }, function () { button.hidden = true; });
          }
        });
      });
    });
    document.querySelectorAll("[data-wx=scanQRCode]").forEach(function (button) {
      ready().then(function (wx) {
        if (!wx) { return; }
        button.hidden = false;
        if (!once(button)) { return; }
        button.addEventListener("click", function () {
          wx.scanQRCode({needResult: 0, scanType: ["qrCode"]});
        });
      });
    });
    document.querySelectorAll("[data-wx=subscribe]").forEach(function (box) {
      ready().then(function (wx) { if (wx) { box.hidden = false; } });
    });
    document.querySelectorAll("[data-wx=missing]").forEach(function (line) {
      ready().then(function (wx) { if (wx) { line.hidden = true; } });
    });
    document.querySelectorAll("wx-open-subscribe").forEach(function (tag) {
      if (!once(tag)) { return; }
      tag.addEventListener("success", function (e) {
        var note = document.getElementById(tag.id + "-note");
        if (note) { note.hidden = false; }
        return e;
      });
    });
  }

  window.volbotPages = {
    attach: function (wx) { window.wx = wx; configured = null; setup(); }
  };
  setup();
})();

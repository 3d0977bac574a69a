// The console's only script: progress bars of push fan-outs, "select all" boxes and
// confirmations. Pages work without it; it only makes them livelier.
(function () {
  function poll(el) {
    var url = el.getAttribute("data-progress");
    var bar = el.querySelector(".bar span"), text = el.querySelector(".progress-text");
    function tick() {
      fetch(url, {headers: {"Accept": "application/json"}, credentials: "same-origin"})
        .then(function (r) { return r.json(); })
        .then(function (p) {
          bar.style.width = p.percent + "%";
          el.setAttribute("data-percent", p.percent);
          text.textContent = "已处理 " + p.done + " / " + p.total + "（" + p.percent + "%）" +
            (p.failed ? "，失败 " + p.failed : "") + (p.reasons ? "（" + p.reasons + "）" : "");
          if (!p.finished) setTimeout(tick, 1000);
        })
        .catch(function () { setTimeout(tick, 3000); });
    }
    tick();
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-progress]").forEach(poll);
    document.querySelectorAll("input[data-select-all]").forEach(function (box) {
      box.addEventListener("change", function () {
        document.querySelectorAll("input[name='" + box.getAttribute("data-select-all") + "']")
          .forEach(function (b) { b.checked = box.checked; });
      });
    });
    document.querySelectorAll("form[data-confirm]").forEach(function (f) {
      f.addEventListener("submit", function (e) {
        if (!window.confirm(f.getAttribute("data-confirm"))) e.preventDefault();
      });
    });
  });
})();

// The simulated phone: personas in localStorage, a chat that posts through the server's
// WeChat client (/simulator/api/send), the custom menu, a map for locations, QR codes to
// scan, and template pushes polled from the WeChat API emulator (/simulator/api/pushes).
(function () {
  "use strict";
  const API = document.location.pathname.replace(/\/+$/, "") + "/api";
  const KEY = "volbot.sim.";
  const ROLE_NAMES = { resident: "居民", volunteer: "志愿者", coordinator: "管理员" };
  const $ = (id) => document.getElementById(id);
  const store = {
    get(name, fallback) {
      try { const v = JSON.parse(localStorage.getItem(KEY + name)); return v === null ? fallback : v; }
      catch (e) { return fallback; }
    },
    set(name, value) { localStorage.setItem(KEY + name, JSON.stringify(value)); },
  };
  let world = { menu: [], map: null, places: [], scans: [], personas: [] };
  let current = null;
  let picked = null;
  let polling = null;

  // ---- personas ---------------------------------------------------------------------
  function allPersonas() {
    return world.personas.concat(store.get("personas", []));
  }
  function persona(openid) { return allPersonas().find((p) => p.openid === openid); }
  function followed(openid) {
    const f = store.get("followed", {});
    if (openid in f) return f[openid];
    return world.personas.some((p) => p.openid === openid);  // demo people already follow
  }
  function setFollowed(openid, yes) { const f = store.get("followed", {}); f[openid] = yes; store.set("followed", f); }

  function renderPersonas() {
    const sel = $("persona-select");
    sel.innerHTML = "";
    for (const role of ["resident", "volunteer", "coordinator"]) {
      const group = document.createElement("optgroup");
      group.label = ROLE_NAMES[role];
      for (const p of allPersonas().filter((x) => x.role === role)) {
        const o = document.createElement("option");
        o.value = p.openid;
        o.textContent = `${p.name}（${p.openid}）`;
        group.appendChild(o);
      }
      if (group.children.length) sel.appendChild(group);
    }
    if (current) sel.value = current;
  }

  function choose(openid) {
    const p = persona(openid);
    if (!p) return;
    current = openid;
    store.set("current", openid);
    $("persona-select").value = openid;
    $("persona-badge").textContent = ROLE_NAMES[p.role] + " · " + p.name;
    $("persona-note").textContent = p.note || "";
    showPersonas(false);
    renderChat();
    pollPushes();
  }

  // On a phone the simulator is the phone: the persona panel is a sheet behind a button.
  function showPersonas(open) {
    document.body.classList.toggle("personas-open", open);
    $("personas-btn").setAttribute("aria-expanded", open ? "true" : "false");
  }

  function createPersona(role, name) {
    const id = "o_sim_" + role.slice(0, 3) + "_" + Math.random().toString(36).slice(2, 10);
    const p = { openid: id, name: name || ROLE_NAMES[role] + id.slice(-4), role, note: "本机新建" };
    const mine = store.get("personas", []);
    mine.push(p);
    store.set("personas", mine);
    renderPersonas();
    choose(id);
    send({ kind: "subscribe" }, "（关注公众号）");
  }

  // ---- chat -------------------------------------------------------------------------
  function log() { return store.get("chat." + current, []); }
  function append(entry) {
    const items = log();
    items.push(entry);
    store.set("chat." + current, items.slice(-150));
    draw(entry);
  }
  function renderChat() {
    $("chat").innerHTML = "";
    for (const entry of log()) draw(entry);
  }
  function draw(entry) {
    const chat = $("chat");
    let node;
    if (entry.who === "system") {
      node = document.createElement("div");
      node.className = "system" + (entry.error ? " error" : "");
      node.textContent = entry.text;
    } else if (entry.who === "push") {
      node = pushCard(entry.push);
    } else {
      node = document.createElement("div");
      node.className = "msg " + entry.who;
      const avatar = document.createElement("div");
      avatar.className = "avatar";
      avatar.textContent = entry.who === "bot" ? "奎文" : "我";
      node.appendChild(avatar);
      if (entry.article) {
        const a = document.createElement("div");
        a.className = "article";
        const b = document.createElement("b");
        b.textContent = entry.article.title;
        const d = document.createElement("div");
        d.textContent = entry.article.description;
        a.append(b, d);
        node.appendChild(a);
      } else {
        const bubble = document.createElement("div");
        bubble.className = "bubble" + (entry.event ? " event" : "");
        if (entry.who === "bot") withLinks(bubble, entry.text);
        else bubble.textContent = entry.text;
        node.appendChild(bubble);
      }
    }
    chat.appendChild(node);
    chat.scrollTop = chat.scrollHeight;
  }

  function pushCard(push) {
    const card = document.createElement("div");
    card.className = "push-card";
    const title = document.createElement("div");
    title.className = "push-title";
    title.textContent = push.title || "服务通知";
    card.appendChild(title);
    for (const [label, text] of push.fields || []) {
      const row = document.createElement("div");
      row.className = "push-field";
      const name = document.createElement("span");
      name.textContent = label;
      const value = document.createElement("span");
      value.textContent = text;
      row.append(name, value);
      card.appendChild(row);
    }
    const from = document.createElement("div");
    from.className = "push-from";
    from.textContent = "模板消息" + (push.sent_at ? " · " + push.sent_at : "") + (push.url ? " · 详情" : "");
    card.appendChild(from);
    if (push.url) {
      card.classList.add("has-url");
      card.addEventListener("click", () => openWebview(push.url, push.title));
    }
    return card;
  }

  // A text reply may carry <a href="…">…</a> (WeChat shows it as a link): only those become
  // links, everything else stays text. A link opens in the in-app browser.
  function withLinks(box, text) {
    const re = /<a href="([^"<>]+)">([^<]*)<\/a>/g;
    let last = 0, m;
    while ((m = re.exec(text)) !== null) {
      box.appendChild(document.createTextNode(text.slice(last, m.index)));
      const a = document.createElement("a");
      const url = m[1].replace(/&amp;/g, "&");
      a.href = url;
      a.textContent = m[2];
      a.addEventListener("click", (ev) => { ev.preventDefault(); openWebview(url, m[2]); });
      box.appendChild(a);
      last = re.lastIndex;
    }
    box.appendChild(document.createTextNode(text.slice(last)));
  }

  // ---- the in-app browser -----------------------------------------------------------
  // A page of ours is opened as WeChat opens it for this persona: through the emulator's
  // stand-in for WeChat's own sign-in (its OAuth then says who is asking), then given the
  // fake JS-SDK (wx-fake.js) once it has loaded.
  function webviewSrc(url) {
    const target = new URL(url, location.origin);
    if (target.origin !== location.origin || !target.pathname.startsWith("/m/") || !world.emulator) return target.href;
    const signIn = location.origin + "/m/auth/start?next=" + encodeURIComponent(target.pathname + target.search);
    return world.emulator + "/_emulator/webview?openid=" + encodeURIComponent(current) + "&url=" + encodeURIComponent(signIn);
  }
  function openWebview(url, title) {
    closeSheets();
    $("webview-title").textContent = title || "网页";
    $("webview").hidden = false;
    $("webview-frame").src = webviewSrc(url);
  }
  function closeWebview() { $("webview").hidden = true; $("webview-frame").src = "about:blank"; }
  function attachWx() {
    let win;
    try { win = $("webview-frame").contentWindow; if (!win.volbotPages) return; } catch (e) { return; }
    const host = {
      api: API,
      location: () => picked || (world.places[0] ? { lat: world.places[0].lat, lng: world.places[0].lng } : { lat: 36.7, lng: 119.1 }),
      scan: (done, sendIt) => { scanDone = (scene, name) => { done(scene); if (sendIt) { closeWebview(); send({ kind: "scan", key: scene }, `（扫描二维码：${name}）`); } }; openSheet("sheet-scan"); },
      note: (text) => append({ who: "system", text }),
      openid: () => current,
    };
    win.volbotPages.attach(window.VolbotFakeWx(host, win));
  }
  let scanDone = null;

  // `shown` is what the person's own side of the chat shows; null for a menu tap, which
  // WeChat does not show in the chat (only the account's answer appears).
  async function send(action, shown) {
    if (!current) return;
    const openid = current;
    const body = Object.assign({ openid, followed: followed(openid) }, action);
    const enc = $("encrypt");
    if (enc) body.encrypt = enc.checked;
    if (shown !== null) append({ who: "me", text: shown, event: action.kind !== "text" && action.kind !== "voice" });
    let result;
    try {
      const resp = await fetch(API + "/send", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
      });
      result = await resp.json();
    } catch (e) {
      result = { ok: false, error: "模拟器服务器无响应" };
    }
    if (action.kind === "subscribe" || (action.kind === "scan" && !body.followed)) setFollowed(openid, true);
    if (action.kind === "unsubscribe") setFollowed(openid, false);
    if (openid !== current) return;  // persona switched while waiting
    if (!result.ok) append({ who: "system", text: "发送失败：" + result.error, error: true });
    else if (result.type === "text") append({ who: "bot", text: result.text });
    else if (result.type === "news") append({ who: "bot", article: result.article });
    pollPushes();
  }

  // ---- pushes from the emulator -------------------------------------------------------
  async function pollPushes() {
    if (!current) return;
    const openid = current;
    const cursors = store.get("cursors", {});
    try {
      const resp = await fetch(`${API}/pushes?openid=${encodeURIComponent(openid)}&since=${encodeURIComponent(cursors[openid] || "")}`);
      const data = await resp.json();
      if (!data.ok || openid !== current) return;
      for (const push of data.pushes) append({ who: "push", push });
      cursors[openid] = data.cursor;
      store.set("cursors", cursors);
    } catch (e) { /* the next poll tries again */ }
  }

  // ---- custom menu ------------------------------------------------------------------
  function renderMenu() {
    const nav = $("menu");
    nav.innerHTML = "";
    for (const button of world.menu) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "menu-btn";
      b.textContent = button.name;
      b.addEventListener("click", (ev) => {
        if (button.sub_button && button.sub_button.length) openSubmenu(button.sub_button, b);
        else menuAction(button);
        ev.stopPropagation();
      });
      nav.appendChild(b);
    }
  }
  function openSubmenu(items, anchor) {
    const box = $("submenu");
    box.innerHTML = "";
    for (const item of items) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "sub-btn";
      b.textContent = item.name;
      b.addEventListener("click", () => { box.hidden = true; menuAction(item); });
      box.appendChild(b);
    }
    const phone = anchor.closest(".phone").getBoundingClientRect();
    const r = anchor.getBoundingClientRect();
    box.style.left = Math.max(4, Math.min(r.left - phone.left - 10, phone.width - 140)) + "px";
    box.hidden = false;
  }
  function menuAction(item) {
    if (item.type === "view") { send({ kind: "view", key: item.url }, null); openWebview(item.url, item.name); }
    else if (item.type === "location_select") openSheet("sheet-location");
    else if (item.type && item.type.startsWith("scancode")) openSheet("sheet-scan");
    else send({ kind: "click", key: item.key }, null);
  }

  // ---- map --------------------------------------------------------------------------
  let projection = null;
  function drawMap() {
    const svg = $("map");
    const b = world.map.bounds;
    const W = 340, H = 260, pad = 10;
    const k = Math.cos(((b.north + b.south) / 2) * Math.PI / 180);
    const scale = Math.min((W - 2 * pad) / ((b.east - b.west) * k), (H - 2 * pad) / (b.north - b.south));
    const ox = (W - (b.east - b.west) * k * scale) / 2, oy = (H - (b.north - b.south) * scale) / 2;
    projection = {
      to: (lat, lng) => [ox + (lng - b.west) * k * scale, oy + (b.north - lat) * scale],
      from: (x, y) => [b.north - (y - oy) / scale, b.west + (x - ox) / (k * scale)],
    };
    const ns = "http://www.w3.org/2000/svg";
    svg.innerHTML = "";
    const poly = document.createElementNS(ns, "polygon");
    poly.setAttribute("class", "outline");
    poly.setAttribute("points", world.map.outline.map(([la, ln]) => projection.to(la, ln).join(",")).join(" "));
    svg.appendChild(poly);
    for (const p of world.places) {
      const [x, y] = projection.to(p.lat, p.lng);
      const c = document.createElementNS(ns, "circle");
      c.setAttribute("class", "dot " + p.kind);
      c.setAttribute("cx", x.toFixed(1));
      c.setAttribute("cy", y.toFixed(1));
      c.setAttribute("r", p.kind === "plaza" ? 3.5 : 2.2);
      const t = document.createElementNS(ns, "title");
      t.textContent = p.name;
      c.appendChild(t);
      svg.appendChild(c);
    }
    const pin = document.createElementNS(ns, "circle");
    pin.setAttribute("class", "pin");
    pin.setAttribute("r", 5);
    pin.setAttribute("id", "map-pin");
    pin.style.display = "none";
    svg.appendChild(pin);
    svg.addEventListener("click", (ev) => {
      const pt = svg.createSVGPoint();
      pt.x = ev.clientX; pt.y = ev.clientY;
      const local = pt.matrixTransform(svg.getScreenCTM().inverse());
      const [lat, lng] = projection.from(local.x, local.y);
      pick(lat, lng, nearestLabel(lat, lng));
    });
    const sel = $("place-select");
    for (const [i, p] of world.places.entries()) {
      const o = document.createElement("option");
      o.value = i;
      o.textContent = p.name;
      sel.appendChild(o);
    }
  }
  function nearestLabel(lat, lng) {
    let best = null, dist = Infinity;
    for (const p of world.places) {
      const d = (p.lat - lat) ** 2 + (p.lng - lng) ** 2;
      if (d < dist) { dist = d; best = p; }
    }
    return best ? best.label + "附近" : "潍坊市奎文区";
  }
  function pick(lat, lng, label) {
    picked = { lat: +lat.toFixed(6), lng: +lng.toFixed(6), label };
    const [x, y] = projection.to(lat, lng);
    const pin = $("map-pin");
    pin.setAttribute("cx", x); pin.setAttribute("cy", y); pin.style.display = "";
    $("map-picked").textContent = `${label}（${picked.lat}, ${picked.lng}）`;
    $("map-send").disabled = false;
  }

  // ---- scan -------------------------------------------------------------------------
  function renderScans(filter) {
    const list = $("scan-list");
    list.innerHTML = "";
    let group = null;
    const f = (filter || "").trim();
    for (const s of world.scans.filter((x) => !f || x.name.includes(f) || x.group.includes(f))) {
      if (s.group !== group) {
        group = s.group;
        const g = document.createElement("li");
        g.className = "group";
        g.textContent = group;
        list.appendChild(g);
      }
      const li = document.createElement("li");
      li.className = "scan-item";
      li.dataset.scene = s.scene;
      li.textContent = s.name;
      const small = document.createElement("small");
      small.textContent = s.scene;
      li.appendChild(small);
      li.addEventListener("click", () => {
        closeSheets();
        if (scanDone) { const done = scanDone; scanDone = null; done(s.scene, s.name); return; }
        send({ kind: "scan", key: s.scene }, `（扫描二维码：${s.name}）`);
      });
      list.appendChild(li);
    }
  }

  // ---- panels -----------------------------------------------------------------------
  function closeSheets() {
    for (const id of ["sheet-location", "sheet-scan", "plus-panel", "submenu"]) $(id).hidden = true;
  }
  function openSheet(id) { closeSheets(); $(id).hidden = false; }
  function setMode(keyboard) {
    $("keyboard").hidden = !keyboard;
    $("menu").hidden = keyboard;
    $("mode-toggle").textContent = keyboard ? "☰" : "⌨";
    closeSheets();
    if (keyboard) $("msg-input").focus();
  }

  function wire() {
    $("persona-select").addEventListener("change", (e) => choose(e.target.value));
    $("personas-btn").addEventListener("click", () => showPersonas(!document.body.classList.contains("personas-open")));
    $("personas-close").addEventListener("click", () => showPersonas(false));
    $("new-persona-create").addEventListener("click", () =>
      createPersona($("new-persona-role").value, $("new-persona-name").value.trim()));
    $("mode-toggle").addEventListener("click", () => setMode($("keyboard").hidden));
    $("send-btn").addEventListener("click", sendTyped);
    $("msg-input").addEventListener("keydown", (e) => { if (e.key === "Enter") sendTyped(); });
    $("plus-btn").addEventListener("click", () => { const p = $("plus-panel"); const open = p.hidden; closeSheets(); p.hidden = !open; });
    $("loc-btn").addEventListener("click", () => openSheet("sheet-location"));
    $("scan-btn").addEventListener("click", () => openSheet("sheet-scan"));
    $("voice-btn").addEventListener("click", () => {
      const text = $("msg-input").value.trim();
      if (!text) { append({ who: "system", text: "先在输入框里写下要“说”的话，再点语音。" }); return; }
      $("msg-input").value = "";
      closeSheets();
      send({ kind: "voice", text }, "[语音] " + text);
    });
    $("image-btn").addEventListener("click", () => { closeSheets(); send({ kind: "image" }, "[图片]"); });
    $("follow-btn").addEventListener("click", () => { closeSheets(); send({ kind: "subscribe" }, "（关注公众号）"); });
    $("unfollow-btn").addEventListener("click", () => { closeSheets(); send({ kind: "unsubscribe" }, "（取消关注）"); });
    for (const b of document.querySelectorAll(".sheet .close")) b.addEventListener("click", closeSheets);
    $("map-send").addEventListener("click", () => {
      if (!picked) return;
      closeSheets();
      send({ kind: "location", lat: picked.lat, lng: picked.lng, label: picked.label }, `[位置] ${picked.label}`);
    });
    $("place-select").addEventListener("change", (e) => {
      const p = world.places[+e.target.value];
      if (p) pick(p.lat, p.lng, p.label);
    });
    $("scan-filter").addEventListener("input", (e) => renderScans(e.target.value));
    $("webview-close").addEventListener("click", closeWebview);
    $("webview-frame").addEventListener("load", attachWx);
    for (const b of document.querySelectorAll("#sheet-scan .close")) b.addEventListener("click", () => { scanDone = null; });
    $("clear-chat").addEventListener("click", () => { store.set("chat." + current, []); renderChat(); });
    document.addEventListener("click", (e) => { if (!e.target.closest("#submenu")) $("submenu").hidden = true; });
  }
  function sendTyped() {
    const input = $("msg-input");
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    send({ kind: "text", text }, text);
  }

  async function start() {
    wire();
    world = await (await fetch(API + "/world")).json();
    renderMenu();
    drawMap();
    renderScans("");
    renderPersonas();
    const remembered = store.get("current", null);
    const first = persona(remembered) ? remembered
      : (allPersonas().find((p) => p.role === "resident") || allPersonas()[0] || {}).openid;
    if (first) choose(first);
    else createPersona("resident", "");
    setMode(false);
    polling = setInterval(pollPushes, 2500);
    document.body.dataset.ready = "yes";
  }
  start();
})();

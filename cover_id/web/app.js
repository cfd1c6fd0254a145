// cover-id web page: identify a photo (file, drop, camera), keep a scan session, correct results,
// browse and grow the collection.
"use strict";

// ---- live-camera fusion (pure: no DOM, so tests can drive it) ----------------------------------
// An item counts as seen when `need` consecutive frames show it (accept or review, at least one accept);
// a one-frame flicker of something else neither replaces it nor adds anything. The tracked item stays
// shown until it has been missing from `lost` frames in a row; it is added to the session once per
// appearance, never once per frame.
class LiveFusion {
  constructor(need = 3, lost = 2) {
    this.need = need;
    this.lost = lost;
    this.reset();
  }

  reset() {
    this.streakId = null;
    this.streak = 0;
    this.accepts = 0;
    this.tracked = null;
    this.missing = 0;
  }

  // frame: an identify answer (or null for a failed frame). Returns {tracked, candidate, streak, add}.
  push(frame) {
    const m = frame && frame.match;
    const seen = m && (frame.decision === "accept" || frame.decision === "review") ? m : null;
    if (seen && seen.id === this.streakId) {
      this.streak += 1;
      this.accepts += frame.decision === "accept" ? 1 : 0;
    } else {
      this.streakId = seen ? seen.id : null;
      this.streak = seen ? 1 : 0;
      this.accepts = seen && frame.decision === "accept" ? 1 : 0;
    }
    let add = null;
    if (seen && this.streak >= this.need && this.accepts >= 1) {
      if (!this.tracked || this.tracked.id !== seen.id) add = seen;  // a new appearance: add it once
      this.tracked = { id: seen.id, name: seen.name, match: seen, frame };
      this.missing = 0;
    } else if (this.tracked) {
      this.missing = seen && seen.id === this.tracked.id ? 0 : this.missing + 1;
      if (this.missing >= this.lost) this.tracked = null;  // it left the view: the next appearance counts again
    }
    return { tracked: this.tracked, candidate: seen, streak: this.streak, add };
  }
}
window.LiveFusion = LiveFusion;

(() => {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const PAGE = 24;
  const LIVE_SIDE = 640;        // live frames are sent at most this large
  const LIVE_EVERY_MS = 700;    // a frame about this often, never more than one request in flight
  const state = {
    health: null, offset: 0, total: 0, detailId: null, stream: null, liveTimer: null, busy: false, photoUrl: null,
    session: localStorage.getItem("cover-id-session") || null, last: null, fusion: new LiveFusion(3, 2), refIds: null,
  };

  // ---- helpers --------------------------------------------------------------------
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) if (c != null) node.append(c);
    return node;
  }
  const fmt = (x, d = 2) => (x == null ? "–" : Number(x).toFixed(d));
  const money = (value, currency) => `${Number(value).toFixed(2)}${currency ? " " + currency : ""}`;
  const priceText = (p) => (p && typeof p === "object" ? money(p.value, p.currency) : p != null ? String(p) : "");
  const refImage = (id, size) => `/api/refs/${encodeURIComponent(id)}/image` + (size ? `?size=${size}` : "");

  async function api(path, options = {}) {
    const res = await fetch(path, options);
    let body = null;
    try { body = await res.json(); } catch (_) { /* empty or not JSON */ }
    if (!res.ok) {
      const detail = body && body.detail ? body.detail : `${res.status} ${res.statusText}`;
      throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
    }
    return body;
  }

  function show(node, text, kind) {
    node.hidden = !text;
    node.textContent = text || "";
    node.className = "message" + (kind ? " " + kind : "");
  }

  function fillFields(dl, record) {
    dl.replaceChildren();
    for (const [k, v] of Object.entries(record || {})) {
      if (["name", "cosine", "geom_score", "inliers", "image_url"].includes(k) || v == null) continue;
      const text = k === "price" && typeof v === "object" ? priceText(v) : typeof v === "object" ? JSON.stringify(v) : String(v);
      dl.append(el("dt", { text: k }), el("dd", { text }));
    }
  }

  // ---- tabs and status --------------------------------------------------------------
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => {
      for (const t of document.querySelectorAll(".tab")) t.classList.toggle("active", t === tab);
      for (const p of document.querySelectorAll(".panel")) p.classList.toggle("active", p.id === tab.dataset.tab);
      if (tab.dataset.tab === "collection") loadRefs();
    });
  }

  async function refreshHealth() {
    try {
      const h = await api("/health");
      state.health = h;
      $("status").textContent = `${h.index.size} references · ${h.encoder.name} encoder · ${h.requests} requests`;
      $("text-wrap").hidden = !h.text_search;
      $("key-wrap").hidden = !h.writes.api_key_required;
    } catch (e) {
      $("status").textContent = "server unreachable: " + e.message;
    }
  }

  // ---- identify ---------------------------------------------------------------------
  async function identify(blob, name) {
    const limit = state.health ? state.health.max_upload_mb * 1048576 : Infinity;
    if (blob.size > limit) {
      show($("message"), `That file is ${(blob.size / 1e6).toFixed(1)} MB; the server accepts at most ${state.health.max_upload_mb} MB.`, "error");
      return;
    }
    state.busy = true;
    const form = new FormData();
    form.append("file", blob, name || "photo.jpg");
    form.append("multi", $("multi").checked ? "true" : "false");
    if (!state.stream) show($("message"), "Identifying…");
    try {
      const sid = $("session-on").checked ? await ensureSession() : null;
      const url = "/api/identify" + (sid ? `?session=${encodeURIComponent(sid)}` : "");
      const r = await api(url, { method: "POST", body: form });
      showResult(r, blob, name);
      show($("message"), "");
      if (sid) renderSession();
    } catch (e) {
      show($("message"), e.message, "error");
    } finally {
      state.busy = false;
      refreshHealth();
    }
  }

  function showResult(r, blob, name) {
    if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
    state.photoUrl = URL.createObjectURL(blob);
    const top = r.multi ? (r.covers || [])[0] : r;
    state.last = top ? { result: top, blob, name: name || "photo.jpg", item: top.session_item || null } : null;
    render(r, state.photoUrl);
  }

  function render(r, photoUrl) {
    $("result").hidden = false;
    const covers = r.multi ? r.covers : [r];
    const top = covers[0] || { decision: "reject", match: null, alternatives: [] };
    const badge = $("decision");
    badge.textContent = r.multi ? `${r.count} found` : top.decision;
    badge.className = "badge " + (r.multi ? (r.count ? "accept" : "reject") : top.decision);
    const m = top.match;
    $("match-name").textContent = m ? (top.decision === "reject" ? `not in the collection (closest: ${m.name})` : m.name) : "nothing recognised";
    $("scores").textContent = r.multi
      ? `${fmt(r.timings_ms.total, 0)} ms`
      : `geometry ${fmt(top.geom_score)} · ${top.inliers} inliers · cosine ${fmt(top.cosine)} · via ${top.strategy} · ${fmt(r.timings_ms.total, 0)} ms`;

    const photo = $("photo");
    const svg = $("overlay");
    const [w, h] = r.image_size;
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.replaceChildren();
    const poly = (pts, cls) => {
      if (!pts) return;
      const p = document.createElementNS(SVG, "polygon");
      p.setAttribute("points", pts.map(([x, y]) => `${x},${y}`).join(" "));
      p.setAttribute("class", cls);
      svg.append(p);
    };
    for (const c of covers) {
      poly(c.quad, "quad");
      if (c.match) poly(c.match_quad, "match " + c.decision);
    }
    photo.src = photoUrl;

    $("match-price").textContent = m && top.decision !== "reject" ? priceText(m.price) : "";
    $("feedback").hidden = !state.last;
    $("fb-status").textContent = "";
    $("fb-confirm").hidden = !(m && top.decision !== "reject");
    $("ref-figure").hidden = !m;
    if (m) {
      $("ref-image").src = refImage(m.id, 800);
      $("ref-caption").textContent = `${m.name} (${m.id})`;
    }
    const list = $("covers");
    list.replaceChildren();
    if (r.multi) {
      for (const c of covers) {
        list.append(el("div", { class: "cover-item" },
          el("span", { class: "badge " + c.decision, text: c.decision }), " ",
          el("strong", { text: c.match.name }), ` geometry ${fmt(c.geom_score)}, ${c.inliers} inliers`));
      }
    }
    fillFields($("fields"), m);
    $("fields-title").hidden = !m;
    const alts = $("alternatives");
    alts.replaceChildren();
    for (const a of top.alternatives || []) {
      const pick = el("button", { type: "button", class: "fb-pick", "data-id": a.id, text: "This one" });
      pick.addEventListener("click", () => sendFeedback("correct", a.id));
      alts.append(el("li", {},
        el("img", { src: refImage(a.id, 240), alt: a.name, loading: "lazy" }),
        el("div", { class: "name", text: a.name }),
        el("div", { class: "muted", text: `geometry ${fmt(a.geom_score)} · cosine ${fmt(a.cosine)}` + (a.price ? ` · ${priceText(a.price)}` : "") }),
        pick));
    }
    $("alts-title").hidden = !(top.alternatives || []).length;
  }

  const drop = $("drop");
  $("file").addEventListener("change", (e) => { const f = e.target.files[0]; if (f) identify(f, f.name); e.target.value = ""; });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const f = e.dataTransfer.files[0];
    if (f) identify(f, f.name);
  });

  // ---- camera -----------------------------------------------------------------------
  async function startCamera() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      show($("message"), "This browser cannot use a camera here (it needs https or localhost).", "error");
      return;
    }
    try {
      state.stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment", width: { ideal: 1280 } }, audio: false });
    } catch (e) {
      show($("message"), "Camera not available: " + e.message, "error");
      return;
    }
    const video = $("video");
    video.srcObject = state.stream;
    video.hidden = false;
    await video.play();
    for (const id of ["cam-capture", "cam-stop", "live-wrap"]) $(id).hidden = false;
    $("cam-start").hidden = true;
  }

  function stopCamera() {
    $("live").checked = false;
    setLive(false);
    if (state.stream) for (const t of state.stream.getTracks()) t.stop();
    state.stream = null;
    $("video").hidden = true;
    for (const id of ["cam-capture", "cam-stop", "live-wrap"]) $(id).hidden = true;
    $("cam-start").hidden = false;
  }

  function captureFrame(maxSide) {
    const video = $("video");
    if (!state.stream || !video.videoWidth) return Promise.resolve(null);
    const scale = maxSide ? Math.min(1, maxSide / Math.max(video.videoWidth, video.videoHeight)) : 1;
    const canvas = document.createElement("canvas");
    canvas.width = Math.round(video.videoWidth * scale);
    canvas.height = Math.round(video.videoHeight * scale);
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.85));
  }

  // One live frame: identify it (no session), fuse it with the frames before, add a steady item once.
  async function liveFrame() {
    if (state.busy) return;  // never more than one request in flight
    state.busy = true;
    try {
      const blob = await captureFrame(LIVE_SIDE);
      if (!blob) return;
      const form = new FormData();
      form.append("file", blob, "live.jpg");
      let r = null;
      try {
        r = await api("/api/identify", { method: "POST", body: form });
      } catch (e) {
        show($("message"), e.message, "error");
      }
      const fused = state.fusion.push(r && !r.multi ? r : null);
      showTracking(fused);
      if (fused.add) {
        showResult(r, blob, "live.jpg");
        if ($("session-on").checked) await addLiveItem(fused.add, r, blob);
      }
    } finally {
      state.busy = false;
    }
  }

  function showTracking(f) {
    const t = $("tracking");
    t.hidden = false;
    if (f.tracked) {
      t.textContent = `✓ ${f.tracked.name}` + (f.tracked.match.price ? ` · ${priceText(f.tracked.match.price)}` : "");
      t.className = "tracking accept";
    } else if (f.candidate) {
      t.textContent = `seeing ${f.candidate.name}… (${Math.min(f.streak, state.fusion.need)}/${state.fusion.need})`;
      t.className = "tracking pending";
    } else {
      t.textContent = "looking…";
      t.className = "tracking pending";
    }
  }

  async function addLiveItem(match, r, blob) {
    try {
      const sid = await ensureSession();
      const form = new FormData();
      form.append("file", blob, "live.jpg");
      form.append("ref_id", match.id);
      form.append("decision", r.decision);
      if (r.geom_score != null) form.append("geom_score", String(r.geom_score));
      const item = await api(`/api/sessions/${encodeURIComponent(sid)}/items`, { method: "POST", body: form });
      if (state.last) state.last.item = item;
      renderSession();
    } catch (e) {
      show($("message"), e.message, "error");
    }
  }

  async function captureAndIdentify() {
    const blob = await captureFrame();
    if (blob) await identify(blob, "camera.jpg");
  }

  function setLive(on) {
    clearInterval(state.liveTimer);
    state.liveTimer = null;
    state.fusion.reset();
    $("tracking").hidden = !on;
    if (on) state.liveTimer = setInterval(liveFrame, LIVE_EVERY_MS);
  }

  $("cam-start").addEventListener("click", startCamera);
  $("cam-stop").addEventListener("click", stopCamera);
  $("cam-capture").addEventListener("click", captureAndIdentify);
  $("live").addEventListener("change", (e) => setLive(e.target.checked));

  // ---- scan session -----------------------------------------------------------------
  function selectSession(id) {
    state.session = id;
    if (id) localStorage.setItem("cover-id-session", id);
    else localStorage.removeItem("cover-id-session");
  }

  async function loadSessions() {
    try {
      const { sessions } = await api("/api/sessions");
      if (!sessions.some((s) => s.id === state.session)) selectSession(sessions.length ? sessions[0].id : null);
      const sel = $("session-select");
      sel.replaceChildren(...sessions.map((s) => el("option", { value: s.id, text: `${s.name} (${s.count})` })));
      if (!sessions.length) sel.append(el("option", { value: "", text: "no session yet" }));
      sel.value = state.session || "";
      await renderSession();
    } catch (e) {
      show($("message"), "Sessions: " + e.message, "error");
    }
  }

  async function newSession() {
    const s = await api("/api/sessions", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
    selectSession(s.id);
    await loadSessions();
    return s.id;
  }

  async function ensureSession() {
    return state.session || newSession();
  }

  async function renderSession() {
    const list = $("session-items");
    const sid = state.session;
    for (const id of ["export-csv", "export-json"]) $(id).hidden = !sid;
    $("session-undo").disabled = !sid;
    if (!sid) {
      list.replaceChildren();
      $("session-empty").hidden = false;
      $("session-total").textContent = "";
      return;
    }
    let s;
    try {
      s = await api(`/api/sessions/${encodeURIComponent(sid)}`);
    } catch (e) {
      selectSession(null);  // deleted elsewhere
      return loadSessions();
    }
    $("export-csv").href = `/api/sessions/${encodeURIComponent(sid)}/export?format=csv`;
    $("export-json").href = `/api/sessions/${encodeURIComponent(sid)}/export?format=json`;
    const opt = [...$("session-select").options].find((o) => o.value === sid);
    if (opt) opt.textContent = `${s.name} (${s.count})`;
    list.replaceChildren();
    for (const it of s.items) {
      const img = it.has_thumb
        ? `/api/sessions/${encodeURIComponent(sid)}/items/${it.id}/thumb`
        : it.ref_id ? refImage(it.ref_id, 96) : null;
      const remove = el("button", { type: "button", class: "remove", title: "remove", text: "×" });
      remove.addEventListener("click", async () => {
        await api(`/api/sessions/${encodeURIComponent(sid)}/items/${it.id}`, { method: "DELETE" });
        renderSession();
      });
      const meta = [`${it.decision}`];
      if (it.price) meta.push(priceText(it.price));
      const fixed = it.correction ? el("div", { class: "meta corrected", text: `corrected (was ${it.correction.from_name || it.correction.from || "?"})` })
        : it.confirmed ? el("div", { class: "meta", text: "confirmed" }) : null;
      list.append(el("li", { "data-item": String(it.id), "data-ref": it.ref_id || "" },
        img ? el("img", { src: img, alt: "" }) : el("span"),
        el("div", {},
          el("div", { class: "name", text: it.name }),
          el("div", { class: "meta" }, el("span", { class: "count", text: `×${it.count}` }), ` · ${meta.join(" · ")}`),
          fixed),
        remove));
    }
    $("session-empty").hidden = s.items.length > 0;
    const t = Object.entries(s.total.by_currency).map(([cur, v]) => money(v, cur));
    $("session-total").textContent = s.count
      ? `${s.count} item${s.count === 1 ? "" : "s"}` + (t.length ? ` · total ${t.join(" + ")}` : "") + (t.length && s.total.unpriced ? ` (${s.total.unpriced} unpriced)` : "")
      : "";
  }

  $("session-select").addEventListener("change", (e) => { selectSession(e.target.value || null); renderSession(); });
  $("session-new").addEventListener("click", () => newSession().catch((e) => show($("message"), e.message, "error")));
  $("session-undo").addEventListener("click", async () => {
    if (!state.session) return;
    await api(`/api/sessions/${encodeURIComponent(state.session)}/undo`, { method: "POST" });
    renderSession();
  });

  // ---- feedback: confirm or correct the shown result -------------------------------------
  async function sendFeedback(action, refId) {
    const last = state.last;
    if (!last) return;
    const status = $("fb-status");
    try {
      let r;
      if (last.item && state.session) {
        const body = { action, session: state.session, item: last.item.id };
        if (refId) body.ref_id = refId;
        r = await api("/api/feedback", { method: "POST", headers: { "Content-Type": "application/json", ...authHeaders() }, body: JSON.stringify(body) });
      } else {
        const form = new FormData();
        form.append("file", last.blob, last.name);
        form.append("action", action);
        if (refId) form.append("ref_id", refId);
        if (last.result.match) form.append("predicted_id", last.result.match.id);
        form.append("decision", last.result.decision);
        r = await api("/api/feedback", { method: "POST", body: form, headers: authHeaders() });
      }
      // a confirmed or corrected photo becomes an extra view of the item when the server allows it
      const taught = r.view ? " Learned: this photo is now an extra view of it." : "";
      status.textContent = (action === "confirm" ? "Thanks: confirmed." :
        action === "absent" ? "Noted: not in your collection." : `Corrected to ${r.truth}.`) + taught;
      status.className = "muted ok";
      renderSession();
    } catch (e) {
      status.textContent = e.message;
      status.className = "muted error";
    }
  }

  $("fb-confirm").addEventListener("click", () => sendFeedback("confirm"));
  $("fb-absent").addEventListener("click", () => sendFeedback("absent"));
  $("fb-other-go").addEventListener("click", () => {
    const id = $("fb-other").value.trim();
    if (id) sendFeedback("correct", id);
  });
  $("fb-other").addEventListener("focus", async () => {
    if (state.refIds) return;
    try {
      const r = await api("/api/refs?limit=500");
      state.refIds = r.items.map((x) => x.id);
      $("fb-ids").replaceChildren(...r.items.map((x) => el("option", { value: x.id, text: x.name })));
    } catch (_) { /* typing an id still works */ }
  });

  // ---- collection -------------------------------------------------------------------
  async function loadRefs() {
    const q = $("q").value.trim();
    const grid = $("grid");
    try {
      let items;
      if (q && $("by-text").checked) {
        const r = await api(`/api/search-by-text?query=${encodeURIComponent(q)}&k=${PAGE}`);
        items = r.results;
        state.total = items.length;
        state.offset = 0;
      } else {
        const r = await api(`/api/refs?offset=${state.offset}&limit=${PAGE}` + (q ? `&q=${encodeURIComponent(q)}` : ""));
        items = r.items;
        state.total = r.total;
      }
      grid.replaceChildren();
      for (const item of items) {
        const card = el("div", { class: "card", "data-id": item.id },
          el("img", { src: refImage(item.id, 240), alt: item.name, loading: "lazy" }),
          el("div", { class: "name", text: item.name }),
          el("div", { class: "muted", text: item.cosine != null ? `cosine ${fmt(item.cosine)}` : item.id }));
        card.addEventListener("click", () => openDetail(item.id));
        grid.append(card);
      }
      const end = Math.min(state.offset + items.length, state.total);
      $("page-info").textContent = state.total ? `${state.offset + 1}–${end} of ${state.total}` : "no references match";
      $("prev").disabled = state.offset === 0;
      $("next").disabled = end >= state.total;
      loadStats();
    } catch (e) {
      grid.replaceChildren(el("p", { class: "message error", text: e.message }));
    }
  }

  async function loadStats() {
    try {
      const s = await api("/api/stats");
      const parts = [`${s.references} references`, `${s.added_via_api} added here`, `encoder ${s.encoder.name}`];
      for (const [k, f] of Object.entries(s.fields)) {
        if (f.type === "number") parts.push(`${k} ${f.min}–${f.max}`);
        else if (f.counts && k !== "name") parts.push(`${k}: ${Object.keys(f.counts).length} values`);
      }
      $("stats").textContent = parts.join(" · ");
    } catch (_) { /* the grid shows errors */ }
  }

  async function openDetail(id) {
    try {
      const r = await api(`/api/refs/${encodeURIComponent(id)}`);
      state.detailId = id;
      $("detail-image").src = r.image_url;
      $("detail-name").textContent = r.name;
      fillFields($("detail-fields"), r);
      $("detail").hidden = false;
    } catch (e) {
      alert(e.message);
    }
  }

  function authHeaders() {
    const key = $("api-key").value || localStorage.getItem("cover-id-key") || "";
    return key ? { "X-API-Key": key } : {};
  }

  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); state.offset = 0; loadRefs(); });
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); loadRefs(); });
  $("next").addEventListener("click", () => { state.offset += PAGE; loadRefs(); });
  $("detail-close").addEventListener("click", () => { $("detail").hidden = true; });
  $("detail-delete").addEventListener("click", async () => {
    if (!state.detailId || !confirm(`Delete reference '${state.detailId}'?`)) return;
    try {
      await api(`/api/refs/${encodeURIComponent(state.detailId)}`, { method: "DELETE", headers: authHeaders() });
      $("detail").hidden = true;
      loadRefs();
      refreshHealth();
    } catch (e) {
      alert(e.message);
    }
  });

  // ---- add --------------------------------------------------------------------------
  function parseMeta(text) {
    text = text.trim();
    if (!text) return null;
    if (text.startsWith("{")) { JSON.parse(text); return text; }
    const out = {};
    for (const line of text.split("\n")) {
      if (!line.trim()) continue;
      const i = line.search(/[:=]/);
      if (i < 1) throw new Error(`line "${line}" is not "field: value"`);
      const key = line.slice(0, i).trim();
      const raw = line.slice(i + 1).trim();
      out[key] = raw !== "" && !isNaN(Number(raw)) ? Number(raw) : raw;
    }
    return JSON.stringify(out);
  }

  $("api-key").value = localStorage.getItem("cover-id-key") || "";
  $("add-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const file = $("add-file").files[0];
    if (!file) return;
    const form = new FormData();
    form.append("file", file, file.name);
    if ($("add-name").value.trim()) form.append("name", $("add-name").value.trim());
    if ($("add-id").value.trim()) form.append("id", $("add-id").value.trim());
    try {
      const meta = parseMeta($("add-meta").value);
      if (meta) form.append("metadata", meta);
    } catch (err) {
      show($("add-result"), "Catalog fields: " + err.message, "error");
      return;
    }
    if ($("api-key").value) localStorage.setItem("cover-id-key", $("api-key").value);
    $("add-submit").disabled = true;
    try {
      const r = await api("/api/refs", { method: "POST", body: form, headers: authHeaders() });
      show($("add-result"), `Added “${r.name}” as ${r.id}; the collection now has ${r.references} references.`, "ok");
      $("add-form").reset();
      $("api-key").value = localStorage.getItem("cover-id-key") || "";
      refreshHealth();
    } catch (err) {
      show($("add-result"), err.message, "error");
    } finally {
      $("add-submit").disabled = false;
    }
  });

  refreshHealth();
  loadSessions();
})();

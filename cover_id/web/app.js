// cover-id web page: identify a photo (file, drop, camera), browse and grow the collection.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const PAGE = 24;
  const state = { health: null, offset: 0, total: 0, detailId: null, stream: null, liveTimer: null, busy: false, photoUrl: null };

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
      if (["name", "cosine", "geom_score", "inliers", "image_url"].includes(k)) continue;
      dl.append(el("dt", { text: k }), el("dd", { text: typeof v === "object" ? JSON.stringify(v) : String(v) }));
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
      const r = await api("/api/identify", { method: "POST", body: form });
      if (state.photoUrl) URL.revokeObjectURL(state.photoUrl);
      state.photoUrl = URL.createObjectURL(blob);
      render(r, state.photoUrl);
      show($("message"), "");
    } catch (e) {
      show($("message"), e.message, "error");
    } finally {
      state.busy = false;
      refreshHealth();
    }
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
      alts.append(el("li", {},
        el("img", { src: refImage(a.id, 240), alt: a.name, loading: "lazy" }),
        el("div", { class: "name", text: a.name }),
        el("div", { class: "muted", text: `geometry ${fmt(a.geom_score)} · cosine ${fmt(a.cosine)}` })));
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

  function captureFrame() {
    const video = $("video");
    if (!state.stream || !video.videoWidth) return Promise.resolve(null);
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
  }

  async function captureAndIdentify() {
    const blob = await captureFrame();
    if (blob) await identify(blob, "camera.jpg");
  }

  function setLive(on) {
    clearInterval(state.liveTimer);
    state.liveTimer = null;
    if (on) {
      // One frame about every second, never more than one request in flight.
      state.liveTimer = setInterval(() => { if (!state.busy) captureAndIdentify(); }, 1000);
    }
  }

  $("cam-start").addEventListener("click", startCamera);
  $("cam-stop").addEventListener("click", stopCamera);
  $("cam-capture").addEventListener("click", captureAndIdentify);
  $("live").addEventListener("change", (e) => setLive(e.target.checked));

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
})();

// aurl studio: the page of `aurl serve`. Plain JavaScript, no build step and no libraries: it talks to the
// JSON API under /api (see aurl/serve/app.py), draws songs and takes as piano rolls on <canvas>, and follows
// a generation job through its server-sent events. Everything musical happens on the server.
"use strict";

(() => {
  // ---- access token: read once from the page's own address, sent on every call -------------------------
  const TOKEN = new URLSearchParams(window.location.search).get("token") || "";
  const AUTH_SENTENCE = TOKEN
    ? "The token in this page's address was not accepted: open the studio with the link `aurl serve` printed."
    : "This studio needs its access token: open it with the link `aurl serve` printed (it ends in ?token=…).";

  const $ = (id) => document.getElementById(id);

  // General MIDI program names (program numbers from 0, as in MIDI files and the API)
  const GM = [
    "Acoustic Grand Piano", "Bright Acoustic Piano", "Electric Grand Piano", "Honky-tonk Piano",
    "Electric Piano 1", "Electric Piano 2", "Harpsichord", "Clavinet", "Celesta", "Glockenspiel", "Music Box",
    "Vibraphone", "Marimba", "Xylophone", "Tubular Bells", "Dulcimer", "Drawbar Organ", "Percussive Organ",
    "Rock Organ", "Church Organ", "Reed Organ", "Accordion", "Harmonica", "Tango Accordion",
    "Acoustic Guitar (nylon)", "Acoustic Guitar (steel)", "Electric Guitar (jazz)", "Electric Guitar (clean)",
    "Electric Guitar (muted)", "Overdriven Guitar", "Distortion Guitar", "Guitar Harmonics", "Acoustic Bass",
    "Electric Bass (finger)", "Electric Bass (pick)", "Fretless Bass", "Slap Bass 1", "Slap Bass 2",
    "Synth Bass 1", "Synth Bass 2", "Violin", "Viola", "Cello", "Contrabass", "Tremolo Strings",
    "Pizzicato Strings", "Orchestral Harp", "Timpani", "String Ensemble 1", "String Ensemble 2",
    "Synth Strings 1", "Synth Strings 2", "Choir Aahs", "Voice Oohs", "Synth Voice", "Orchestra Hit",
    "Trumpet", "Trombone", "Tuba", "Muted Trumpet", "French Horn", "Brass Section", "Synth Brass 1",
    "Synth Brass 2", "Soprano Sax", "Alto Sax", "Tenor Sax", "Baritone Sax", "Oboe", "English Horn",
    "Bassoon", "Clarinet", "Piccolo", "Flute", "Recorder", "Pan Flute", "Blown Bottle", "Shakuhachi",
    "Whistle", "Ocarina", "Lead 1 (square)", "Lead 2 (sawtooth)", "Lead 3 (calliope)", "Lead 4 (chiff)",
    "Lead 5 (charang)", "Lead 6 (voice)", "Lead 7 (fifths)", "Lead 8 (bass + lead)", "Pad 1 (new age)",
    "Pad 2 (warm)", "Pad 3 (polysynth)", "Pad 4 (choir)", "Pad 5 (bowed)", "Pad 6 (metallic)", "Pad 7 (halo)",
    "Pad 8 (sweep)", "FX 1 (rain)", "FX 2 (soundtrack)", "FX 3 (crystal)", "FX 4 (atmosphere)",
    "FX 5 (brightness)", "FX 6 (goblins)", "FX 7 (echoes)", "FX 8 (sci-fi)", "Sitar", "Banjo", "Shamisen",
    "Koto", "Kalimba", "Bagpipe", "Fiddle", "Shanai", "Tinkle Bell", "Agogo", "Steel Drums", "Woodblock",
    "Taiko Drum", "Melodic Tom", "Synth Drum", "Reverse Cymbal", "Guitar Fret Noise", "Breath Noise",
    "Seashore", "Bird Tweet", "Telephone Ring", "Helicopter", "Applause", "Gunshot",
  ];
  // Track colours: saturated enough to tell apart on the dark roll, none of them grey
  const COLOURS = [
    "#e6a157", "#6aa9f0", "#7dcf8a", "#e27d9f", "#b08cf0", "#5cc8d6",
    "#e3cf5f", "#f08a5d", "#a3c95b", "#d58ede", "#8fa5ff", "#f2b8a2",
  ];
  const ROLL = {
    bg: "#0f1216", white: "#151a20", black: "#11151a", grid: "#262d36", bar: "#3a4350", text: "#8a94a3",
    axis: "#171b21", select: "rgba(106, 169, 240, 0.16)", selectEdge: "#6aa9f0", given: "#5d6571",
  };
  // The fields of a request this page can ask for (the tasks and their fields come from /api/models); a task
  // with a field not listed here is not offered
  const FIELDS = ["song", "keep", "add", "bars", "track", "controls"];
  // The sampling options shown; `more` ones go under "More options" and only when the model lists them
  const SETTINGS = [
    { key: "temperature", label: "Temperature", step: "0.05", min: "0" },
    { key: "top_k", label: "Top-k", step: "1", min: "0", int: true, note: "0 = off" },
    { key: "top_p", label: "Top-p", step: "0.01", min: "0", max: "1" },
    { key: "min_p", label: "Min-p", step: "0.01", min: "0", max: "1" },
    { key: "repetition_penalty", label: "Repetition penalty", step: "0.05", min: "0" },
    { key: "max_tokens", label: "Max tokens", step: "1", min: "1", int: true },
    { key: "num", label: "Takes", step: "1", min: "1", int: true },
    { key: "meter", label: "Meter", choices: "meters", note: "hold = the first bar's" },
    { key: "seed", label: "Seed", step: "1", min: "0", int: true },
    { key: "sweeps", label: "Revision sweeps", step: "1", min: "0", int: true, more: true, note: "co-creation" },
    { key: "keep_sweeps", label: "Keep each sweep's version", bool: true, more: true, note: "co-creation" },
    { key: "primer_bars", label: "Primer bars", step: "1", min: "1", int: true, more: true },
    { key: "repetition_window", label: "Repetition window", step: "1", min: "0", int: true, more: true },
    { key: "min_tokens", label: "Min tokens", step: "1", min: "0", int: true, more: true },
    { key: "min_bars", label: "Min bars", step: "1", min: "1", int: true, more: true },
    { key: "max_bars", label: "Max bars", step: "1", min: "1", int: true, more: true },
    { key: "constrained", label: "Grammar-constrained", bool: true, more: true },
  ];
  const FINAL = ["done", "failed", "cancelled"];

  const state = {
    models: [],
    model: null,
    task: "generate", // the task's name; its fields: task()
    song: null,
    keep: new Set(),
    infillTrack: null,
    bars: null, // [from, to], bars from 1, inclusive
    add: [],
    userSettings: {}, // values the musician typed, kept across model changes
    job: null, // the job being written: {id, model, task, label, songName, source, poll, started}
    takes: 0,
  };

  // The tasks the model offers that this page can ask for, and the chosen one's fields
  function tasks() {
    const offered = (state.model && state.model.tasks) || [];
    return offered.filter((t) => Object.keys(t.fields).every((f) => FIELDS.includes(f)));
  }
  function task(name = state.task) {
    return tasks().find((t) => t.task === name) || { task: name, label: name, hint: "", fields: {}, uses: [] };
  }
  const has = (field, name = state.task) => field in task(name).fields;
  const uses = (setting, name = state.task) => task(name).uses.includes(setting);
  // Tasks found by their fields: the one that rewrites bars of a song, the one that keeps tracks and adds others
  const rewriteTask = () => tasks().find((t) => "bars" in t.fields && "song" in t.fields);
  const accompanyTask = () => tasks().find((t) => "keep" in t.fields && "add" in t.fields);

  // ---- API ---------------------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  function detailText(detail, res) {
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      // FastAPI's own validation errors: [{loc: ["body", "settings", "top_k"], msg: "..."}]
      return detail
        .map((d) => `${(d.loc || []).filter((p) => p !== "body" && p !== "query").join(".")}: ${d.msg}`)
        .join("; ");
    }
    return `The server answered ${res.status} ${res.statusText}.`;
  }

  async function api(path, options = {}) {
    const init = { ...options, headers: new Headers(options.headers || {}) };
    if (TOKEN) init.headers.set("Authorization", `Bearer ${TOKEN}`);
    if (options.json !== undefined) {
      init.headers.set("Content-Type", "application/json");
      init.body = JSON.stringify(options.json);
      delete init.json;
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch {
      throw new ApiError(0, "The studio server cannot be reached: is `aurl serve` still running?");
    }
    if (!res.ok) {
      if (res.status === 401) throw new ApiError(401, AUTH_SENTENCE);
      let detail = null;
      try {
        detail = (await res.json()).detail;
      } catch {
        // not JSON: fall back to the status line
      }
      throw new ApiError(res.status, detailText(detail, res));
    }
    return res;
  }
  const getJSON = async (path, options) => (await api(path, options)).json();

  // URLs the browser loads by itself (audio, downloads, event streams) carry the token as a parameter
  function withToken(url) {
    if (!TOKEN) return url;
    const u = new URL(url, window.location.href);
    u.searchParams.set("token", TOKEN);
    return u.pathname + u.search;
  }

  // ---- messages ----------------------------------------------------------------------------------------
  function showError(err) {
    const text = err instanceof Error ? err.message : String(err);
    $("error-text").textContent = text;
    $("error").hidden = false;
    if (err && err.status === 401) $("generate").disabled = true;
  }
  function clearError() {
    $("error").hidden = true;
    $("error-text").textContent = "";
  }
  function setStatus(text) {
    $("status").textContent = text;
  }
  // Runs an async action and shows its error sentence on the page instead of losing it
  async function guard(action) {
    try {
      return await action();
    } catch (err) {
      showError(err);
      return undefined;
    }
  }

  // ---- formatting --------------------------------------------------------------------------------------
  function fmtParams(n) {
    if (!Number.isFinite(n)) return "?";
    if (n >= 1e9) return `${(n / 1e9).toFixed(2)} B`;
    if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
    if (n >= 1e3) return `${(n / 1e3).toFixed(1)} k`;
    return String(n);
  }
  function fmtSeconds(s) {
    if (!Number.isFinite(s)) return "";
    const m = Math.floor(s / 60);
    const r = Math.round(s - 60 * m);
    return m ? `${m}:${String(r).padStart(2, "0")}` : `${s.toFixed(1)} s`;
  }
  const programName = (p, isDrum) => (isDrum || p < 0 ? "Drums" : GM[p] || `Program ${p}`);
  function trackName(t) {
    const instrument = programName(t.program, t.is_drum);
    return t.name && t.name.trim() && t.name.trim() !== instrument ? `${t.name.trim()} (${instrument})` : instrument;
  }
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) node.append(c);
    return node;
  }

  // ---- piano roll --------------------------------------------------------------------------------------
  // A roll is drawn from NOTES ({tracks: [{notes: [[start, duration, pitch, velocity]]}], bars, length}),
  // times in quarter notes. Pitched tracks share a pitch axis; drums get a lane of their own at the bottom.
  // opts: keep (Set of track indexes drawn at full strength), focus (one track index), bars ([a, b] shaded).
  // Bar lines, in order and each once: a MIDI file may repeat a time signature at one tick (one per part),
  // which must not make empty bars
  function barLines(bars) {
    const out = [];
    for (const b of bars || []) if (!out.length || b > out[out.length - 1] + 1e-6) out.push(b);
    return out;
  }

  function drawRoll(canvas, notes, opts = {}) {
    canvas._roll = { notes, opts };
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(50, canvas.clientWidth);
    const h = Math.max(40, canvas.clientHeight);
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const tracks = (notes && notes.tracks) || [];
    const bars = barLines(notes && notes.bars);
    const pitched = tracks.filter((t) => !t.is_drum);
    const hasDrums = tracks.some((t) => t.is_drum && t.notes.length);
    let end = (notes && notes.length) || 0;
    for (const t of tracks) for (const n of t.notes) end = Math.max(end, n[0] + n[1]);
    if (bars.length) end = Math.max(end, bars[bars.length - 1] + 0.001);
    end = Math.max(end, 4);

    let lo = 127;
    let hi = 0;
    for (const t of pitched) {
      for (const n of t.notes) {
        lo = Math.min(lo, n[2]);
        hi = Math.max(hi, n[2]);
      }
    }
    if (lo > hi) [lo, hi] = [48, 72];
    lo -= 2;
    hi += 2;
    const minSpan = h > 160 ? 24 : 18;
    if (hi - lo < minSpan) {
      const mid = (hi + lo) / 2;
      lo = Math.round(mid - minSpan / 2);
      hi = lo + minSpan;
    }
    lo = Math.max(0, lo);
    hi = Math.min(127, hi);

    const left = 34;
    const top = 16;
    const right = 4;
    const lane = hasDrums ? Math.min(36, Math.max(14, Math.round(h * 0.14))) : 0;
    const gap = hasDrums ? 3 : 0;
    const plotW = w - left - right;
    const plotH = h - top - lane - gap - 2;
    const rowH = plotH / (hi - lo + 1);
    const xAt = (t) => left + (t / end) * plotW;
    const yAt = (p) => top + (hi - p) * rowH;
    canvas._geom = { left, plotW, end, bars, top, height: h };

    // background: the axis, white-key and black-key rows, C lines
    ctx.fillStyle = ROLL.axis;
    ctx.fillRect(0, 0, w, h);
    ctx.fillStyle = ROLL.bg;
    ctx.fillRect(left, top, plotW, plotH);
    const blackKeys = new Set([1, 3, 6, 8, 10]);
    for (let p = lo; p <= hi; p++) {
      ctx.fillStyle = blackKeys.has(p % 12) ? ROLL.black : ROLL.white;
      if (rowH >= 3 || !blackKeys.has(p % 12)) ctx.fillRect(left, yAt(p), plotW, Math.max(1, rowH));
    }
    ctx.font = "10px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
    ctx.textBaseline = "middle";
    ctx.textAlign = "right";
    for (let p = lo; p <= hi; p++) {
      if (p % 12 !== 0) continue;
      const y = yAt(p) + rowH;
      ctx.fillStyle = ROLL.grid;
      ctx.fillRect(left, Math.round(y) - 0.5, plotW, 1);
      ctx.fillStyle = ROLL.text;
      ctx.fillText(`C${p / 12 - 1}`, left - 5, y - rowH / 2);
    }
    if (hasDrums) {
      ctx.fillStyle = ROLL.bg;
      ctx.fillRect(left, top + plotH + gap, plotW, lane);
      ctx.fillStyle = ROLL.text;
      ctx.fillText("drums", left - 3, top + plotH + gap + lane / 2);
    }

    // the selected bars, under the notes
    if (opts.bars && bars.length) {
      const [a, b] = opts.bars;
      const x0 = xAt(bars[a - 1] !== undefined ? bars[a - 1] : 0);
      const x1 = xAt(b < bars.length ? bars[b] : end);
      ctx.fillStyle = ROLL.select;
      ctx.fillRect(x0, top, x1 - x0, h - top);
      ctx.fillStyle = ROLL.selectEdge;
      ctx.fillRect(x0, top, 1.5, h - top);
      ctx.fillRect(x1 - 1.5, top, 1.5, h - top);
    }

    // bar lines and numbers (thinned out where bars are narrow)
    ctx.textAlign = "left";
    ctx.textBaseline = "alphabetic";
    // a number is written where it does not run into the previous one (pickup bars are short)
    const avgBar = bars.length ? plotW / bars.length : plotW;
    const every = Math.max(1, Math.ceil(22 / Math.max(1, avgBar)));
    let free = -Infinity;
    bars.forEach((b, k) => {
      const x = Math.round(xAt(b)) + 0.5;
      ctx.fillStyle = ROLL.bar;
      ctx.fillRect(x - 0.5, top, 1, h - top);
      const number = k + 1;
      const label = String(number);
      if ((number === 1 || number % every === 0) && x + 3 >= free) {
        const inSel = opts.bars && number >= opts.bars[0] && number <= opts.bars[1];
        ctx.fillStyle = inSel ? ROLL.selectEdge : ROLL.text;
        ctx.fillText(label, x + 3, top - 4);
        free = x + 3 + ctx.measureText(label).width + 5;
      }
    });

    // notes
    const scale = plotW / end;
    tracks.forEach((t, i) => {
      const dim = (opts.keep && !opts.keep.has(t.index)) || (opts.focus !== null && opts.focus !== undefined
        && opts.focus !== t.index);
      ctx.globalAlpha = dim ? 0.22 : 1;
      const colour = COLOURS[i % COLOURS.length]; // written notes; given ones (kept as they were) grey
      if (t.is_drum) {
        const y0 = top + plotH + gap;
        for (const [start, , pitch, , given] of t.notes) {
          const y = y0 + 2 + ((81 - Math.min(81, Math.max(35, pitch))) / 46) * (lane - 6);
          ctx.fillStyle = given ? ROLL.given : colour;
          ctx.fillRect(xAt(start), y, Math.max(2, 0.12 * scale), 2);
        }
      } else {
        const rh = Math.max(1, rowH > 3 ? rowH - 1 : rowH);
        for (const [start, dur, pitch, , given] of t.notes) {
          if (pitch < lo || pitch > hi) continue;
          ctx.fillStyle = given ? ROLL.given : colour;
          ctx.fillRect(xAt(start), yAt(pitch), Math.max(1.5, dur * scale - 0.6), rh);
        }
      }
    });
    ctx.globalAlpha = 1;

    // continue: what comes after the primer is veiled, since the model writes its own
    if (opts.primer && bars.length > opts.primer) {
      const x = xAt(bars[opts.primer]);
      ctx.fillStyle = "rgba(15, 18, 22, 0.72)";
      ctx.fillRect(x, top, left + plotW - x, h - top);
      ctx.fillStyle = ROLL.selectEdge;
      ctx.fillRect(x - 1, top, 2, h - top);
      ctx.fillStyle = ROLL.text;
      ctx.textBaseline = "top";
      ctx.fillText("the model continues from here", x + 6, top + 4);
    }
    canvas.dataset.notes = String(tracks.reduce((s, t) => s + t.notes.length, 0));
  }

  function redraw(canvas) {
    if (canvas._roll) drawRoll(canvas, canvas._roll.notes, canvas._roll.opts);
  }
  const resizer = new ResizeObserver((entries) => entries.forEach((e) => redraw(e.target)));

  // Bar number (from 1) under an x position of a drawn roll
  function barAt(canvas, clientX) {
    const g = canvas._geom;
    if (!g || !g.bars.length) return null;
    const x = clientX - canvas.getBoundingClientRect().left;
    const t = Math.min(g.end, Math.max(0, ((x - g.left) / g.plotW) * g.end));
    let k = 0;
    while (k < g.bars.length && g.bars[k] <= t) k++;
    return Math.min(g.bars.length, Math.max(1, k));
  }

  // Bar number (from 1) under a point of an engraved score: its measures in order (Verovio's g.measure), one
  // per bar of the take
  function measureAt(box, clientX, clientY) {
    const k = [...box.querySelectorAll("g.measure")].findIndex((m) => {
      const r = m.getBoundingClientRect();
      return clientX >= r.left && clientX <= r.right && clientY >= r.top && clientY <= r.bottom;
    });
    return k < 0 ? null : k + 1;
  }

  // The chosen bars shaded in a shown engraved score
  function markMeasures(box, bars) {
    box.querySelectorAll("rect.bar-pick").forEach((r) => r.remove());
    if (!bars || box.hidden) return;
    for (const measure of [...box.querySelectorAll("g.measure")].slice(bars[0] - 1, bars[1])) {
      const b = measure.getBBox();
      const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
      for (const [k, v] of Object.entries({ class: "bar-pick", x: b.x, y: b.y, width: b.width, height: b.height })) {
        rect.setAttribute(k, String(v));
      }
      measure.prepend(rect);
    }
  }

  // A legend: one entry per track, in the roll's colours. `onPick(index)` makes the entries buttons.
  function fillLegend(container, notes, opts = {}, onPick = null) {
    container.replaceChildren();
    ((notes && notes.tracks) || []).forEach((t, i) => {
      const off = (opts.keep && !opts.keep.has(t.index)) || (opts.focus !== null && opts.focus !== undefined
        && opts.focus !== t.index);
      const chosen = opts.focus !== null && opts.focus !== undefined && opts.focus === t.index;
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = COLOURS[i % COLOURS.length];
      const label = `${t.index} · ${trackName(t)}`;
      const count = el("span", { class: "count", text: `${t.notes.length} notes` });
      const attrs = {
        class: `legend-item${off ? " off" : ""}${chosen ? " chosen" : ""}`,
        "data-track": String(t.index),
        title: label,
      };
      let item;
      if (onPick) {
        item = el("button", { ...attrs, type: "button", "aria-pressed": String(!off) }, swatch, label, count);
        item.addEventListener("click", () => onPick(t.index));
      } else {
        item = el("span", attrs, swatch, label, count);
      }
      container.append(item);
    });
    if (((notes && notes.tracks) || []).some((t) => t.notes.some((n) => n[4]))) {
      const swatch = el("span", { class: "swatch" });
      swatch.style.background = ROLL.given;
      container.append(el("span", { class: "legend-item given", title: "given: kept as it was" }, swatch, "given"));
    }
  }

  // ---- models, tasks, settings -------------------------------------------------------------------------
  async function loadModels() {
    const data = await getJSON("/api/models");
    state.models = data.models || [];
    $("upload").accept = (data.songs || []).join(",");  // MIDI files and scores in notation
    const select = $("model");
    select.replaceChildren(...state.models.map((m) => el("option", { value: m.id, text: m.id })));
    if (!state.models.length) {
      showError("No model is served: start `aurl serve --run RUN` with a trained run.");
      return;
    }
    selectModel(state.models[0].id);
  }

  function selectModel(id) {
    const m = state.models.find((x) => x.id === id);
    if (!m) return;
    state.model = m;
    $("model").value = id;
    const parts = [
      m.mode,
      m.tokenization,
      `${fmtParams(m.parameters)} parameters`,
      m.context ? `context ${m.context}` : null,
      m.multitrack ? "multitrack" : "single stream",
      m.decoding ? `${m.decoding} decoding` : null,
    ].filter(Boolean);
    $("model-info").replaceChildren(...parts.map((p) => el("span", { class: "tag", text: p })));
    renderTasks();
    renderSettings();
    fillPrograms(m.programs || []);
    const controls = m.controls || [];
    $("controls-hint").textContent = controls.length
      ? `One per line: a scope (track=N, bars=A-B) and controls. This model follows: ${controls.join(", ")}.`
      : "";
    refresh();
  }

  // The programs offered to add: the model's own voices first (its corpus's programs), then every other
  function fillPrograms(own) {
    const option = (p) => el("option", { value: String(p), text: p < 0 ? "Drums (-1)" : `${GM[p]} (${p})` });
    const others = [-1, ...GM.keys()].filter((p) => !own.includes(p)).map(option);
    $("add-program").replaceChildren(...(own.length
      ? [el("optgroup", { label: "Voices this model was trained on" }, ...own.map(option)),
        el("optgroup", { label: "Other instruments" }, ...others)]
      : others));
    $("add-program").value = String(own.length ? own[0] : 0);
  }

  function renderTasks() {
    const offered = tasks();
    if (!offered.some((t) => t.task === state.task)) state.task = offered.length ? offered[0].task : "generate";
    const group = $("tasks");
    group.replaceChildren(
      ...offered.map(({ task: t, label }) => {
        const input = el("input", { type: "radio", name: "task", value: t, id: `task-${t}` });
        input.checked = t === state.task;
        input.addEventListener("change", () => setTask(t));
        return el("label", { class: "seg", for: `task-${t}` }, input, el("span", { text: label }));
      }),
    );
  }

  function setTask(task) {
    state.task = task;
    const radio = $(`task-${task}`);
    if (radio) radio.checked = true;
    if (state.model) renderSettings();  // a task's own defaults (e.g. a cooler co-creation temperature)
    refresh();
  }

  function renderSettings() {
    // the model's settings, with what it takes for this task where a request gives none (generate.tasks)
    const run = state.model.settings || {};
    const defaults = { ...run, ...((run.tasks || {})[state.task] || {}) };
    const main = $("settings");
    const more = $("settings-more");
    main.replaceChildren();
    more.replaceChildren();
    for (const s of SETTINGS) {
      if (s.more && !(s.key in defaults)) continue;
      // a choice among what the model lists (e.g. its time signatures), after hold and free
      const choices = s.choices ? ["hold", "free", ...(state.model[s.choices] || [])] : null;
      if (choices && choices.length === 2) continue;
      const def = defaults[s.key];
      const user = state.userSettings[s.key];
      const input = choices
        ? el("select", { id: `set-${s.key}`, "data-key": s.key },
          ...choices.map((c) => el("option", { value: c, text: c })))
        : s.bool
        ? el("input", { type: "checkbox", id: `set-${s.key}`, "data-key": s.key })
        : el("input", {
          type: "number", id: `set-${s.key}`, "data-key": s.key, step: s.step, min: s.min, max: s.max,
          inputmode: s.int ? "numeric" : "decimal",
        });
      const shown = user !== undefined ? user : def;
      if (s.bool) input.checked = Boolean(shown);
      else input.value = shown === null || shown === undefined ? "" : String(shown);
      const defText = def === null || def === undefined ? "none" : String(def);
      const hint = el("span", { class: "default", text: `default ${defText}${s.note ? ` · ${s.note}` : ""}` });
      const field = el("label", { class: `field setting${s.bool ? " check" : ""}` },
        el("span", { class: "label", text: s.label }), input, hint);
      const mark = () => {
        const value = s.bool ? input.checked : input.value;
        const same = s.bool ? value === Boolean(def) : String(value) === (def === null || def === undefined
          ? "" : String(def));
        field.classList.toggle("changed", !same);
        if (same) delete state.userSettings[s.key];
        else state.userSettings[s.key] = value;
        if (uses(s.key) && s.key === "primer_bars" && state.song) refresh();
      };
      input.addEventListener(s.bool || choices ? "change" : "input", mark);
      mark();
      (s.more ? more : main).append(field);
    }
    $("more-settings").hidden = !more.children.length;
  }

  function readSettings() {
    const out = {};
    for (const s of SETTINGS) {
      const input = $(`set-${s.key}`);
      if (!input) continue;
      if (s.bool) {
        out[s.key] = input.checked;
        continue;
      }
      if (input.value.trim() === "") continue;
      if (s.choices) {
        out[s.key] = input.value;
        continue;
      }
      const value = Number(input.value);
      if (!Number.isFinite(value) || (s.int && !Number.isInteger(value))) {
        throw new Error(`${s.label} must be ${s.int ? "a whole number" : "a number"}: "${input.value}".`);
      }
      out[s.key] = value;
    }
    return out;
  }

  // ---- the song ----------------------------------------------------------------------------------------
  function setSong(song) {
    if (song && song.notes) {
      song.notes.bars = barLines(song.notes.bars);
      song.bars = song.notes.bars.length || song.bars;
    }
    state.song = song;
    state.keep = new Set(song ? song.tracks.map((t) => t.index) : []);
    state.infillTrack = null;
    state.bars = null;
    const select = $("infill-track");
    select.replaceChildren(el("option", { value: "", text: "Every track" }));
    if (song) {
      for (const t of song.tracks) select.append(el("option", { value: String(t.index), text: `${t.index} · ${trackName(t)}` }));
      $("bar-from").max = String(song.bars);
      $("bar-to").max = String(song.bars);
    }
    $("bar-from").value = "";
    $("bar-to").value = "";
    $("song-clear").hidden = !song;
    if (song && !has("song")) {
      // a song is there to be worked with: offer the first task that uses one
      const next = tasks().find((t) => "song" in t.fields);
      if (next) setTask(next.task);
    }
    refresh();
  }

  async function uploadSong(file) {
    if (!file) return;
    clearError();
    setStatus(`Reading ${file.name}…`);
    // a score's voices take the chosen model's programs
    const query = `name=${encodeURIComponent(file.name)}&model=${encodeURIComponent(state.model ? state.model.id : "")}`;
    const res = await guard(() => api(`/api/songs?${query}`, {
      method: "POST", body: file, headers: { "Content-Type": "application/octet-stream" },
    }));
    setStatus("");
    if (!res) return;
    setSong(await res.json());
    $("example").value = "";
  }

  async function loadExamples() {
    const data = await getJSON("/api/examples");
    const select = $("example");
    for (const ex of data.examples || []) {
      select.append(el("option", { value: ex.id, text: `${ex.name} · ${ex.tracks} tracks · ${ex.bars} bars` }));
    }
    select.disabled = !(data.examples || []).length;
  }

  async function pickExample(id) {
    if (!id) return;
    clearError();
    const song = await guard(() => getJSON(`/api/songs/${encodeURIComponent(id)}`));
    if (song) setSong(song);
  }

  function legendPick(index) {
    if (has("keep")) {
      if (state.keep.has(index)) state.keep.delete(index);
      else state.keep.add(index);
    } else if (has("track")) {
      state.infillTrack = state.infillTrack === index ? null : index;
      $("infill-track").value = state.infillTrack === null ? "" : String(state.infillTrack);
    }
    refresh();
  }

  function rollOptions() {
    if (has("keep")) return { keep: state.keep };
    if (has("bars")) return { bars: state.bars, focus: has("track") ? state.infillTrack : null };
    if (uses("primer_bars")) {
      const primer = parseInt(($("set-primer_bars") || {}).value, 10);
      return Number.isInteger(primer) && primer > 0 ? { primer } : {};
    }
    return {};
  }

  // Everything that depends on the model, task and song, redrawn together
  function refresh() {
    const song = state.song;
    const controlled = Boolean(state.model && (state.model.controls || []).length);
    $("task-hint").textContent = task().hint;
    $("accompany-panel").hidden = !(has("keep") || has("add"));
    $("infill-panel").hidden = !(has("bars") || has("track"));
    $("controls-panel").hidden = !(controlled && has("controls"));
    $("song-panel").classList.toggle("needed", has("song") && !song);

    const canvas = $("song-roll");
    $("song-empty").hidden = Boolean(song);
    if (song) {
      $("song-title").textContent = song.name || song.id;
      $("song-meta").textContent = [`${song.bars} bars`, `${song.tracks.length} tracks`,
        song.notes && song.notes.seconds ? fmtSeconds(song.notes.seconds) : null].filter(Boolean).join(" · ");
      const opts = rollOptions();
      drawRoll(canvas, song.notes, opts);
      const pick = has("keep") || has("track") ? legendPick : null;
      fillLegend($("song-legend"), song.notes, opts, pick);
    } else {
      $("song-title").textContent = "No song";
      $("song-meta").textContent = "";
      canvas._roll = null;
      drawRoll(canvas, { tracks: [], bars: [], length: 16 });
      $("song-legend").replaceChildren();
    }
    let rollHint = "";
    if (song && has("keep")) rollHint = "Click a track in the legend to keep or drop it.";
    else if (song && has("bars")) rollHint = "Drag across the roll to choose bars; click a track to rewrite only it.";
    else if (song && tasks().some((t) => "bars" in t.fields)) rollHint = "Drag across the roll to choose bars to rewrite.";
    $("roll-hint").textContent = rollHint;
    for (const row of document.querySelectorAll(".take-rewrite")) row.hidden = !rewriteTask();

    const kept = song ? song.tracks.filter((t) => state.keep.has(t.index)) : [];
    $("keep-summary").textContent = song
      ? `Keeping ${kept.length} of ${song.tracks.length} tracks${kept.length ? ` (${kept.map((t) => t.index).join(", ")})` : ""}`
        + ": click tracks in the legend to keep or drop them."
      : "Choose a song first.";
    $("add-list").replaceChildren(...state.add.map((p, i) => el("li", { class: "chip" },
      el("span", { text: programName(p) + (p >= 0 ? ` (${p})` : "") }),
      el("button", { type: "button", class: "chip-x", "aria-label": `Remove ${programName(p)}`, text: "×",
        onclick: () => { state.add.splice(i, 1); refresh(); } }))));
    if (state.bars) {
      $("bar-from").value = String(state.bars[0]);
      $("bar-to").value = String(state.bars[1]);
    }
    updateGenerate();
  }

  // Why Generate cannot run now (a sentence), or null
  function blocker() {
    if (!state.model) return "No model is loaded.";
    if (has("song") && !state.song) return "Choose a song first: upload a MIDI file or a score, or pick an example.";
    if (has("add") && !state.add.length) return "Add at least one new track to write.";
    if (has("bars") && !state.bars) return "Choose the bars to rewrite: drag across the roll.";
    return null;
  }

  function updateGenerate() {
    const running = Boolean(state.job);
    const why = blocker();
    $("generate").disabled = running || Boolean(why);
    $("generate").title = why || "Ctrl+Enter";
    $("cancel").hidden = !running;
    $("blocker").textContent = running ? "" : why || "";
    $("harmonise").hidden = !harmony().length;
    $("harmonise").disabled = running;
    for (const button of document.querySelectorAll(".take .rewrite")) button.disabled = running;
  }

  // "Harmonise the top voice": the programs added beside the song's first track, the voices the model was
  // trained on (/api/models lists them, the top voice first) but the one that track plays (one stream tells
  // tracks apart by program); a track playing none of them takes the top voice's place. [] where it cannot.
  function harmony() {
    const programs = (state.model && state.model.programs) || [];
    if (!state.song || !accompanyTask() || !programs.length) return [];
    const top = state.song.tracks[0];
    const program = top.is_drum ? -1 : top.program;
    return programs.includes(program) ? programs.filter((p) => p !== program) : programs.slice(1);
  }

  function harmonise() {
    setTask(accompanyTask().task);
    state.keep = new Set([state.song.tracks[0].index]);
    state.add = harmony();
    refresh();
    startJob();
  }

  // ---- jobs --------------------------------------------------------------------------------------------
  function settingsLabel(settings) {
    const s = settings;
    const parts = [];
    if (s.temperature !== undefined) parts.push(`T ${s.temperature}`);
    if (s.top_k) parts.push(`top-k ${s.top_k}`);
    if (s.top_p !== undefined && s.top_p < 1) parts.push(`top-p ${s.top_p}`);
    if (s.min_p) parts.push(`min-p ${s.min_p}`);
    if (s.repetition_penalty !== undefined && s.repetition_penalty !== 1) parts.push(`rep ${s.repetition_penalty}`);
    if (s.max_tokens !== undefined) parts.push(`${s.max_tokens} tokens`);
    if (s.meter !== undefined && s.meter !== "hold") parts.push(`meter ${s.meter}`);
    if (s.sweeps > 0) parts.push(`${s.sweeps} sweep${s.sweeps === 1 ? "" : "s"}`);
    if (s.seed !== undefined) parts.push(`seed ${s.seed}`);
    return parts.join(" · ");
  }

  function jobBody() {
    const body = { model: state.model.id, task: state.task, settings: readSettings() };
    if (has("song")) body.song = state.song.id;
    if (has("keep")) body.keep = [...state.keep].sort((a, b) => a - b);
    if (has("add")) body.add = [...state.add];
    if (has("bars")) body.bars = [...state.bars];
    if (has("track")) body.track = state.infillTrack;
    const controls = $("controls").value.split("\n").map((l) => l.trim()).filter(Boolean);
    if (controls.length && !$("controls-panel").hidden) body.controls = controls;
    return body;
  }

  async function startJob() {
    clearError();
    const why = blocker();
    if (why) {
      showError(why);
      return;
    }
    let body;
    try {
      body = jobBody();
    } catch (err) {
      showError(err);
      return;
    }
    await submitJob(body, state.song);
  }

  // Post a job (its body as the API takes it; `song` the song it names, if any) and follow it in a live card
  async function submitJob(body, song) {
    $("generate").disabled = true;
    const created = await guard(() => getJSON("/api/jobs", { method: "POST", json: body }));
    if (!created) {
      updateGenerate();
      return;
    }
    const what = [task(body.task).label.toLowerCase()];
    if (body.add) what.push(`+ ${body.add.map((p) => programName(p)).join(", ")}`);
    if (body.bars) what.push(`bars ${body.bars[0]}-${body.bars[1]}${body.track == null ? "" : `, track ${body.track}`}`);
    state.job = {
      id: created.id, model: body.model, task: body.task, what: what.join(" "), settings: body.settings,
      songName: song && body.song ? song.name : null, started: performance.now(),
      done: false, source: null, poll: null, card: liveCard(body, song),
    };
    document.body.dataset.job = "running";
    document.body.dataset.jobId = created.id;
    updateGenerate();
    setStatus("Queued…");
    follow(state.job);
  }

  // What the model starts from, drawn until the first notes arrive: the kept tracks (accompany), the song
  // (infill) or its primer bars (continue)
  function promptNotes(body, song) {
    const empty = { tracks: [], bars: [], length: 16 };
    const notes = song && body.song === song.id ? song.notes : null;
    if (!notes) return empty;
    if (body.keep) {
      const keep = new Set(body.keep);
      return { ...notes, tracks: notes.tracks.filter((t) => keep.has(t.index)) };
    }
    if (uses("primer_bars", body.task)) {
      const primer = body.settings.primer_bars || 0;
      if (!primer || primer >= notes.bars.length) return notes;
      const end = notes.bars[primer];
      return {
        ...notes,
        bars: notes.bars.slice(0, primer + 1),
        length: end,
        tracks: notes.tracks.map((t) => ({ ...t, notes: t.notes.filter((n) => n[0] < end) })),
      };
    }
    return notes;
  }

  // A card at the head of the takes that shows the first take being written
  function liveCard(body, song) {
    const canvas = el("canvas", { class: "roll take-roll", id: "live-roll" });
    const card = el("article", { class: "take live" },
      el("header", { class: "take-head" }, el("strong", { class: "take-name", text: "Writing…" }),
        el("span", { class: "take-label meta", text: `${body.model} · ${task(body.task).label.toLowerCase()}` })),
      canvas,
      el("p", { class: "take-stats meta live-stats", text: "waiting for the first tokens" }));
    $("takes").prepend(card);
    $("takes-empty").hidden = true;
    drawRoll(canvas, promptNotes(body, song));
    resizer.observe(canvas);
    return card;
  }

  function follow(job) {
    const source = new EventSource(withToken(`/api/jobs/${encodeURIComponent(job.id)}/events`));
    job.source = source;
    source.addEventListener("progress", (e) => {
      const data = JSON.parse(e.data);
      progress(job, data);
    });
    for (const kind of FINAL) {
      source.addEventListener(kind, (e) => {
        let data = null;
        try {
          data = e.data ? JSON.parse(e.data) : null;
        } catch {
          data = null;
        }
        source.close();
        finish(job, kind, data);
      });
    }
    source.onerror = () => {
      // the stream broke before its last event (a proxy, a restart): ask for the job until it ends
      if (job.done) return;
      source.close();
      poll(job);
    };
  }

  function poll(job) {
    if (job.poll || job.done) return;
    job.poll = setInterval(async () => {
      try {
        const data = await getJSON(`/api/jobs/${encodeURIComponent(job.id)}`);
        progress(job, data);
        if (FINAL.includes(data.status)) finish(job, data.status, data);
      } catch (err) {
        finish(job, "failed", { error: err.message });
      }
    }, 700);
  }

  function progress(job, data) {
    if (job.done) return;
    const secs = (performance.now() - job.started) / 1000;
    const tps = data.tokens_per_second ? `${Math.round(data.tokens_per_second)} tokens/s` : null;
    const text = [`${data.tokens || 0} tokens`, tps, `${secs.toFixed(1)} s`].filter(Boolean).join(" · ");
    setStatus(`Writing… ${text}`);
    const stats = job.card.querySelector(".live-stats");
    stats.textContent = text;
    if (data.notes) {
      const count = (data.notes.tracks || []).reduce((s, t) => s + t.notes.length, 0);
      stats.textContent = `${text} · ${count} notes`;
      drawRoll(job.card.querySelector("canvas"), data.notes);
    }
  }

  async function finish(job, kind, data) {
    if (job.done) return;
    job.done = true;
    if (job.source) job.source.close();
    if (job.poll) clearInterval(job.poll);
    resizer.unobserve(job.card.querySelector("canvas"));
    job.card.remove();
    if (state.job === job) state.job = null;
    document.body.dataset.job = kind;
    const secs = ((performance.now() - job.started) / 1000).toFixed(1);
    if (kind === "done" && data) {
      const takes = data.takes || [];
      const cards = takes.map((take) => takeCard(job, take, takes.length));
      $("takes").prepend(...cards);
      const tps = data.tokens_per_second ? ` · ${Math.round(data.tokens_per_second)} tokens/s` : "";
      updateGenerate();
      setStatus(`Done: ${takes.length} take${takes.length === 1 ? "" : "s"}, ${data.tokens || 0} tokens in ${secs} s${tps}.`);
    } else if (kind === "failed") {
      updateGenerate();
      showError((data && data.error) || "The generation failed.");
      setStatus("Failed.");
    } else {
      updateGenerate();
      setStatus(`Cancelled after ${secs} s.`);
    }
    $("takes-empty").hidden = $("takes").children.length > 0;
    $("takes-count").textContent = state.takes ? `${state.takes} this session` : "";
  }

  async function cancelJob() {
    const job = state.job;
    if (!job) return;
    $("cancel").disabled = true;
    const data = await guard(() => getJSON(`/api/jobs/${encodeURIComponent(job.id)}`, { method: "DELETE" }));
    $("cancel").disabled = false;
    if (data && FINAL.includes(data.status) && data.status !== "cancelled") finish(job, data.status, data);
    else finish(job, "cancelled", data);
  }

  function takeCard(job, take, count) {
    state.takes += 1;
    const card = $("take-template").content.firstElementChild.cloneNode(true);
    card.dataset.job = job.id;
    card.dataset.take = String(take.index);
    card.querySelector(".take-name").textContent =
      `#${state.takes} · take ${take.index + 1}${count > 1 ? ` of ${count}` : ""}`;
    const label = [job.model, job.what, job.songName ? `of ${job.songName}` : null].filter(Boolean).join(" · ");
    const labelNode = card.querySelector(".take-label");
    labelNode.textContent = label;
    const settingsNode = el("div", { class: "take-settings meta", text: settingsLabel(job.settings) });
    settingsNode.title = JSON.stringify(job.settings);
    card.querySelector(".take-head").append(settingsNode);
    const canvas = card.querySelector("canvas");
    const audio = card.querySelector("audio");
    audio.src = withToken(take.wav);
    const link = card.querySelector("a.download");
    link.href = withToken(take.midi);
    link.download = `${job.model}-${job.task}-${job.id}-take${take.index + 1}.mid`;
    const score = card.querySelector("a.download-musicxml");
    score.href = withToken(take.musicxml);
    score.download = `${job.model}-${job.task}-${job.id}-take${take.index + 1}.musicxml`;
    const stats = [`${take.tokens} tokens`, `${take.notes} notes`, `${take.pitches} pitches`];
    if (take.skipped_tokens) stats.push(`${take.skipped_tokens} skipped`);
    card.querySelector(".take-stats").textContent = stats.join(" · ");
    card.querySelector(".use-song").addEventListener("click", () => useAsSong(job, take));
    if (take.versions && take.versions.length) card.querySelector(".take-legend").after(versionsRow(card, take));
    const toggle = card.querySelector(".show-score");
    const chosen = wireRewrite(card, take);
    toggle.addEventListener("click", () => showScore(card, take, toggle, chosen));
    card.querySelector(".take-remove").addEventListener("click", () => {
      resizer.unobserve(canvas);
      audio.pause();
      card.remove();
      $("takes-empty").hidden = $("takes").children.length > 0;
    });
    resizer.observe(canvas);
    // draw once the card is in the page (the canvas needs its size)
    requestAnimationFrame(async () => {
      drawRoll(canvas, { tracks: [], bars: [], length: 16 });
      const notes = await guard(() => getJSON(take.notes_url));
      if (notes) {
        chosen.notes = notes;
        drawRoll(canvas, notes);
        fillLegend(card.querySelector(".take-legend"), notes);
        fillVoices(card.querySelector(".take-voice"), notes);
        card.dataset.drawn = "true";
      }
    });
    return card;
  }

  // What a take was before each revision sweep (settings keep_sweeps), each drawn on the take's roll when
  // chosen, its MIDI then the one downloaded; bars chosen on the roll are rewritten in the final take
  function versionsRow(card, take) {
    const row = el("div", { class: "take-versions meta" }, "Versions: ");
    const link = card.querySelector("a.download");
    const shown = [...take.versions, { name: "final", midi: take.midi, notes_url: take.notes_url }];
    for (const version of shown) {
      const button = el("button", {
        type: "button", class: "linklike version", text: version.name,
        "aria-pressed": String(version.name === "final"),
      });
      button.addEventListener("click", async () => {
        const notes = await guard(() => getJSON(version.notes_url));
        if (!notes) return;
        drawRoll(card.querySelector("canvas"), notes);
        link.href = withToken(version.midi);
        row.querySelectorAll("button").forEach((b) => b.setAttribute("aria-pressed", String(b === button)));
      });
      row.append(button, " ");
    }
    return row;
  }

  // The engraved score in place of the piano roll (and back): fetched once, on the first look
  async function showScore(card, take, toggle, chosen) {
    clearError();
    const box = card.querySelector(".take-score");
    const canvas = card.querySelector("canvas");
    const showing = toggle.getAttribute("aria-pressed") === "true";
    if (!showing && !box.dataset.loaded) {
      toggle.disabled = true;
      const res = await guard(() => api(take.svg));
      toggle.disabled = false;
      if (!res) return;
      box.innerHTML = await res.text();
      box.dataset.loaded = "true";
    }
    box.hidden = showing;
    canvas.hidden = !showing;
    // drawn again at once: a hidden canvas has no width, and bars chosen on it must land where they are seen
    if (showing) redraw(canvas);
    markMeasures(box, chosen.bars);
    toggle.setAttribute("aria-pressed", String(!showing));
    toggle.textContent = showing ? "Score" : "Piano roll";
  }

  // ---- rewriting bars of a take ------------------------------------------------------------------------
  // A take's bars are chosen by dragging across its roll or its score, and its voice (a track, or all) in a
  // list; "Rewrite these bars" runs the model's bar-rewriting task on the take (made a song on the server)
  // with the current model and settings. Returns what is chosen: {notes, bars, song}, notes once loaded.
  function wireRewrite(card, take) {
    const chosen = { notes: null, bars: null, song: null };
    const canvas = card.querySelector("canvas");
    const box = card.querySelector(".take-score");
    const voice = card.querySelector(".take-voice");
    const show = () => {
      card.querySelector(".take-bars").textContent = chosen.bars
        ? `Bars ${chosen.bars[0]}-${chosen.bars[1]}` : "Drag across the roll or the score to choose bars.";
      const focus = voice.value === "" ? null : Number(voice.value);
      if (chosen.notes) drawRoll(canvas, chosen.notes, { bars: chosen.bars, focus });
      markMeasures(box, chosen.bars);
    };
    const pick = (bars) => {
      chosen.bars = bars;
      show();
    };
    const ready = () => Boolean(chosen.notes && rewriteTask());
    wireBarDrag(canvas, (e) => barAt(canvas, e.clientX), ready, pick);
    wireBarDrag(box, (e) => measureAt(box, e.clientX, e.clientY), ready, pick);
    voice.addEventListener("change", show);
    const button = card.querySelector(".rewrite");
    button.addEventListener("click", async () => {
      button.disabled = true;
      await rewriteBars(take, chosen, voice.value);
      updateGenerate();
    });
    card.querySelector(".take-rewrite").hidden = !rewriteTask();
    show();
    return chosen;
  }

  // The voices of a take that can be rewritten: its tracks with notes (a song drops the others)
  function fillVoices(select, notes) {
    select.replaceChildren(el("option", { value: "", text: "All tracks" }), ...notes.tracks
      .filter((t) => t.notes.length)
      .map((t) => el("option", { value: String(t.index), text: `${t.index} · ${trackName(t)}` })));
  }

  async function rewriteBars(take, chosen, voice) {
    clearError();
    if (!chosen.bars) {
      showError("bars: choose the bars to rewrite first: drag across the take's piano roll or score.");
      return;
    }
    let settings;
    try {
      settings = readSettings();
    } catch (err) {
      showError(err);
      return;
    }
    chosen.song = chosen.song || await guard(() => getJSON(take.song, { method: "POST" }));
    if (!chosen.song) return;
    const rewrite = rewriteTask();
    const body = { model: state.model.id, task: rewrite.task, song: chosen.song.id, bars: [...chosen.bars], settings };
    if ("track" in rewrite.fields) {
      // the song counts the take's tracks with notes: the voice's place among them
      const voiced = chosen.notes.tracks.filter((t) => t.notes.length);
      body.track = voice === "" ? null : voiced.findIndex((t) => t.index === Number(voice));
    }
    await submitJob(body, chosen.song);
  }

  async function useAsSong(job, take) {
    clearError();
    setStatus("Loading the take as the song…");
    const res = await guard(() => api(take.midi));
    if (!res) return;
    const blob = await res.blob();
    const name = `${job.model}-${job.task}-take${take.index + 1}.mid`;
    const created = await guard(() => api(`/api/songs?name=${encodeURIComponent(name)}`, {
      method: "POST", body: blob, headers: { "Content-Type": "audio/midi" },
    }));
    if (!created) return;
    setSong(await created.json());
    $("example").value = "";
    setStatus(`${name} is now the song.`);
    document.querySelector(".roll-panel").scrollIntoView({ behavior: "smooth", block: "nearest" });
  }

  // ---- bar selection by dragging across a roll (the song's, a take's) or a take's engraved score ------
  // `at(event)`: the bar (from 1) under the pointer, or null; `ready()`: whether a drag may choose bars now;
  // `pick([from, to])` hears the bars chosen as the drag goes
  function wireBarDrag(node, at, ready, pick) {
    let anchor = null;
    let last = null;
    node.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      const bar = at(e);
      if (bar === null || !ready()) return;
      anchor = bar;
      last = [bar, bar];
      pick(last);
      node.setPointerCapture(e.pointerId);
      e.preventDefault();
    });
    node.addEventListener("pointermove", (e) => {
      if (anchor === null) return;
      const bar = at(e);
      if (bar === null) return;
      const next = [Math.min(anchor, bar), Math.max(anchor, bar)];
      if (next[0] !== last[0] || next[1] !== last[1]) {
        last = next;
        pick(next);
      }
    });
    const end = (e) => {
      if (anchor === null) return;
      anchor = null;
      if (node.hasPointerCapture(e.pointerId)) node.releasePointerCapture(e.pointerId);
    };
    node.addEventListener("pointerup", end);
    node.addEventListener("pointercancel", end);
  }

  function wireSongDrag() {
    const canvas = $("song-roll");
    const ready = () => {
      if (!state.song) return false;
      const rewrite = rewriteTask(); // dragging chooses bars: a task that rewrites them
      if (!has("bars") && rewrite) setTask(rewrite.task);
      return has("bars");
    };
    wireBarDrag(canvas, (e) => barAt(canvas, e.clientX), ready, (bars) => {
      state.bars = bars;
      refresh();
    });
  }

  function barInputs() {
    const a = parseInt($("bar-from").value, 10);
    const b = parseInt($("bar-to").value, 10);
    const max = state.song ? state.song.bars : 1;
    if (Number.isInteger(a) && Number.isInteger(b) && a >= 1 && b >= 1) {
      state.bars = [Math.min(a, b, max), Math.min(Math.max(a, b), max)];
    } else if (Number.isInteger(a) && a >= 1 && $("bar-to").value === "") {
      state.bars = [Math.min(a, max), Math.min(a, max)];
    } else {
      state.bars = null;
    }
    refresh();
  }

  // ---- start -------------------------------------------------------------------------------------------
  function wire() {
    $("model").addEventListener("change", (e) => selectModel(e.target.value));
    $("upload").addEventListener("change", async (e) => {
      await uploadSong(e.target.files[0]);
      e.target.value = "";
    });
    $("example").addEventListener("change", (e) => pickExample(e.target.value));
    $("song-clear").addEventListener("click", () => {
      $("example").value = "";
      setSong(null);
    });
    $("generate").addEventListener("click", startJob);
    $("cancel").addEventListener("click", cancelJob);
    $("error-close").addEventListener("click", clearError);
    $("reset-settings").addEventListener("click", () => {
      state.userSettings = {};
      if (state.model) renderSettings();
    });
    $("harmonise").addEventListener("click", harmonise);
    $("add-button").addEventListener("click", () => {
      state.add.push(parseInt($("add-program").value, 10));
      refresh();
    });
    $("infill-track").addEventListener("change", (e) => {
      state.infillTrack = e.target.value === "" ? null : parseInt(e.target.value, 10);
      refresh();
    });
    document.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && !$("generate").disabled) startJob();
    });
    $("bar-from").addEventListener("change", barInputs);
    $("bar-to").addEventListener("change", barInputs);
    wireSongDrag();
    resizer.observe($("song-roll"));
  }

  async function start() {
    wire();
    drawRoll($("song-roll"), { tracks: [], bars: [], length: 16 });
    updateGenerate();
    try {
      await loadModels();
      await loadExamples();
      document.body.dataset.ready = "true";
    } catch (err) {
      showError(err);
      $("generate").disabled = true;
      document.body.dataset.ready = "error";
    }
  }

  window.studio = { state }; // for the browser tests and the curious
  start();
})();

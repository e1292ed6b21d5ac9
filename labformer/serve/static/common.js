/*
 * labformer serve — shared helpers for the pages.
 *
 * Everything lives in one global namespace, `LF`, so page scripts (digits.js, text.js, seq2seq.js, lab.js)
 * can use it without a module loader or a build step:
 *   LF.lang                       the page's language ("en" | "fr"), from <html lang>
 *   LF.t(key, params)             the catalogue's text of `key` with its {name} fields filled (the key itself
 *                                 when the catalogue lacks it, so that a missing text shows)
 *   LF.tNodes(key, params)        the same as strings and nodes, for params that are elements
 *   LF.plural(key, count, params) the text of `key.one` or `key.other` (the language's rule), {count} filled
 *   LF.number(x, digits)          a number by the language's rules (0.91 | 0,91); LF.percent(share, digits)
 *   LF.listNodes(items)           items (arrays of nodes) joined as the language joins a list ("a, b and c")
 *   LF.modelName(model), LF.modelSummary(model)   a served model's name and score, in words
 *   LF.setStatus(text, kind)      show a message in <div id="status"> ("info" | "busy" | "ok" | "warn" | "error")
 *   LF.fetchJSON(url, options)    fetch + parse JSON; throws an Error whose message is the API's "error"
 *   LF.errorFromResponse(resp)    turn a non-OK response into an Error with a readable message
 *   LF.health()                   GET /api/health once per page, cached
 *   LF.servedModel(kind)          that page's model from /api/health, or null with the reason shown
 *   LF.colormap(name, t)          [r, g, b] of a perceptual colour map ("viridis" | "inferno") at t in [0, 1]
 *   LF.drawLegend(canvas, name)   paint a horizontal colour bar
 *   LF.el(tag, attrs, children)   small DOM builder that never uses innerHTML
 */
"use strict";

(function () {
  // ---------------------------------------------------------------- the page's language

  /** The page's language, set by the server on <html lang>, and its catalogue (<script id="messages">). */
  const LANG = document.documentElement.lang || "en";
  const MESSAGES = readMessages();

  function readMessages() {
    const element = document.getElementById("messages");
    try {
      return element ? JSON.parse(element.textContent) : {};
    } catch (_) {
      return {};
    }
  }

  function has(key) {
    return Object.prototype.hasOwnProperty.call(MESSAGES, key);
  }

  /** The text of `key` with its {name} fields taken from `params` (a field without a value stays as it is). */
  function t(key, params = {}) {
    if (!has(key)) return key;
    return MESSAGES[key].replace(/\{(\w+)\}/g, (field, name) => (name in params ? String(params[name]) : field));
  }

  /** The text of `key` as a list of strings and nodes: a param that is a Node is put in as that node. */
  function tNodes(key, params = {}) {
    const pieces = (has(key) ? MESSAGES[key] : key).split(/\{(\w+)\}/);
    return pieces
      .map((piece, i) => {
        if (i % 2 === 0) return piece;
        if (!(piece in params)) return `{${piece}}`;
        return params[piece] instanceof Node ? params[piece] : String(params[piece]);
      })
      .filter((piece) => piece !== "");
  }

  const pluralRules = new Intl.PluralRules(LANG);

  /** The text of `key.one`, `key.other`… as the language's plural rule chooses for `count` ({count} filled). */
  function plural(key, count, params = {}) {
    const form = `${key}.${pluralRules.select(count)}`;
    return t(has(form) ? form : `${key}.other`, { count: number(count), ...params });
  }

  const numberFormats = new Map();

  /** `x` with `digits` decimals at most (`minimumDigits` at least), by the language's rules: 0.91 or 0,91. */
  function number(x, digits = 0, minimumDigits = digits) {
    const id = `${digits}/${minimumDigits}`;
    if (!numberFormats.has(id)) {
      numberFormats.set(id, new Intl.NumberFormat(LANG, { maximumFractionDigits: digits, minimumFractionDigits: minimumDigits }));
    }
    return numberFormats.get(id).format(x);
  }

  /** A share (0–1) as a percentage with `digits` decimals: "98.7 %" or "98,7 %" (a non-breaking space). */
  function percent(share, digits = 1) {
    return `${number(100 * share, digits)}\u00a0%`;
  }

  /** `items` (each an array of strings and nodes) joined as the language joins a list: "a, b and c". */
  function listNodes(items) {
    const parts = new Intl.ListFormat(LANG, { type: "conjunction" }).formatToParts(items.map((_, i) => String(i)));
    return parts.flatMap((part) => (part.type === "element" ? items[Number(part.value)] : [part.value]));
  }

  /** The catalogue's names of the shipped models, data sets and tasks (/api/health gives their ids). */
  const SHIPPED = { digits: "model.shipped.digits", text: "model.shipped.text", dates: "model.shipped.dates" };
  const DATASETS = { mnist: "model.dataset.mnist", cifar10: "model.dataset.cifar10" };
  const TASKS = { dates: "model.task.dates", reverse: "model.task.reverse" };

  /** A served model's name: the shipped one's in words, else its run folder's name (as the server gives it). */
  function modelName(model) {
    return SHIPPED[model.shipped] ? t(SHIPPED[model.shipped]) : String(model.name);
  }

  /**
   * What a served model reaches, in words, from the server's `reached` (the shipped weights' numbers):
   * the test accuracy of a "digits" model, the exact answers of a "seq2seq" one, the validation loss of a "text" one.
   */
  function modelSummary(model) {
    const found = model.reached; // what the server found the model reaches: {measure, value, on}, or null
    if (!found) return t("model.not_evaluated");
    if (found.measure === "exact") return t("model.exact", { exact: percent(found.value, 2), task: t(TASKS[found.on] || "model.task.other") });
    if (found.measure === "accuracy") {
      return t("model.accuracy", { accuracy: percent(found.value, 2), dataset: t(DATASETS[found.on] || "model.dataset.other") });
    }
    return t("model.loss", { loss: number(found.value, 3), split: t(found.on === "full" ? "model.split.full" : "model.split.batches") });
  }

  // ---------------------------------------------------------------- the status line and the server

  /** The <div id="status"> element, looked up lazily (scripts load at the end of <body>). */
  function statusElement() {
    return document.getElementById("status");
  }

  /**
   * Show a message in the status line. `kind` is "info" (default), "busy" (with a spinner),
   * "ok" or "error". Text only: the message is set with textContent, never parsed as HTML.
   */
  function setStatus(text, kind = "info") {
    const el = statusElement();
    if (!el) return;
    el.textContent = text;
    el.classList.remove("info", "busy", "ok", "warn", "error");
    el.classList.add(kind);
  }

  /** Show an Error (or anything thrown) in the status line as an error, in words. */
  function showError(err, prefix = "") {
    const message = err && err.message ? err.message : String(err);
    setStatus(prefix ? t("error.while", { context: prefix, message }) : message, "error");
  }

  /** True when `err` comes from an AbortController aborting a fetch or a stream read. */
  function isAbort(err) {
    return Boolean(err) && (err.name === "AbortError" || err.code === 20);
  }

  /**
   * Build an Error from a non-OK response: the API sends {"error": "message"}; anything else
   * (an HTML error page, plain text) becomes "HTTP <status> <statusText>" plus a short excerpt.
   */
  async function errorFromResponse(response) {
    let text = "";
    try {
      text = await response.text();
    } catch (_) {
      text = "";
    }
    let message = "";
    try {
      const data = JSON.parse(text);
      if (data && typeof data.error === "string") message = data.error;
      else if (data && typeof data.detail === "string") message = data.detail;
    } catch (_) {
      message = "";
    }
    if (!message) {
      const excerpt = text.replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim().slice(0, 160);
      message = t("error.http", { status: response.status, text: response.statusText || "" }).trim();
      if (excerpt) message += ` — ${excerpt}`;
    }
    const error = new Error(message);
    error.status = response.status;
    return error;
  }

  /**
   * Fetch `url` and return its parsed JSON body. Throws an Error with a readable message when the
   * server cannot be reached, answers with an error status, or sends something that is not JSON.
   * AbortErrors are re-thrown untouched so callers can ignore them.
   */
  async function fetchJSON(url, options = {}) {
    let response;
    try {
      response = await fetch(url, options);
    } catch (err) {
      if (isAbort(err)) throw err;
      throw new Error(t("error.unreachable"));
    }
    if (!response.ok) throw await errorFromResponse(response);
    try {
      return await response.json();
    } catch (err) {
      if (isAbort(err)) throw err;
      throw new Error(t("error.not_json", { url }));
    }
  }

  /** POST a JSON body and return the parsed JSON answer (see fetchJSON). */
  function postJSON(url, body, options = {}) {
    return fetchJSON(url, {
      ...options,
      method: "POST",
      headers: { "Content-Type": "application/json", ...(options.headers || {}) },
      body: JSON.stringify(body),
    });
  }

  let healthPromise = null;

  /** GET /api/health once per page load (the promise is cached; a failure is not). */
  function health() {
    if (!healthPromise) {
      healthPromise = fetchJSON("/api/health").catch((err) => {
        healthPromise = null;
        throw err;
      });
    }
    return healthPromise;
  }

  /*
   * Colour maps: nine samples of matplotlib's viridis and inferno (evenly spaced from 0 to 1),
   * linearly interpolated. Both are perceptually uniform and readable in grey and by most
   * colour-blind readers.
   */
  const COLORMAPS = {
    viridis: [
      [68, 1, 84], [71, 44, 122], [59, 82, 139], [44, 114, 142], [33, 145, 140],
      [40, 174, 128], [94, 201, 98], [173, 220, 48], [253, 231, 37],
    ],
    inferno: [
      [0, 0, 4], [31, 12, 72], [85, 15, 109], [136, 34, 106], [186, 54, 85],
      [227, 89, 51], [249, 140, 10], [249, 201, 50], [252, 255, 164],
    ],
  };

  /** Colour of map `name` at `t` (clamped to [0, 1]) as an [r, g, b] array of 0–255 integers. */
  function colormap(name, t) {
    const stops = COLORMAPS[name] || COLORMAPS.viridis;
    const x = clamp(Number.isFinite(t) ? t : 0, 0, 1) * (stops.length - 1);
    const i = Math.min(Math.floor(x), stops.length - 2);
    const f = x - i;
    const a = stops[i];
    const b = stops[i + 1];
    return [
      Math.round(a[0] + (b[0] - a[0]) * f),
      Math.round(a[1] + (b[1] - a[1]) * f),
      Math.round(a[2] + (b[2] - a[2]) * f),
    ];
  }

  /** CSS rgba() string of map `name` at `t` with opacity `alpha`. */
  function colormapCSS(name, t, alpha = 1) {
    const [r, g, b] = colormap(name, t);
    return `rgba(${r}, ${g}, ${b}, ${alpha})`;
  }

  /** Paint a left-to-right colour bar of map `name` on `canvas` (its own pixel size). */
  function drawLegend(canvas, name) {
    const ctx = canvas.getContext("2d");
    const w = canvas.width;
    const h = canvas.height;
    for (let x = 0; x < w; x++) {
      ctx.fillStyle = colormapCSS(name, w > 1 ? x / (w - 1) : 0);
      ctx.fillRect(x, 0, 1, h);
    }
  }

  /** Clamp `x` to [lo, hi]. */
  function clamp(x, lo, hi) {
    return Math.min(hi, Math.max(lo, x));
  }

  /** Largest value of an array of numbers (0 for an empty array). */
  function maxOf(values) {
    let m = 0;
    for (const v of values) if (v > m) m = v;
    return m;
  }

  /**
   * Create an element: `attrs` keys are attributes, except "text" (textContent), "className",
   * "dataset" (object) and "on" (object of event listeners). `children` are nodes or strings.
   */
  function el(tag, attrs = {}, children = []) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "className") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "on") {
        for (const [type, fn] of Object.entries(value)) node.addEventListener(type, fn);
      } else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children) {
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }

  /** Size a canvas's pixel buffer to its CSS size times the device pixel ratio (capped at 3). */
  function fitCanvas(canvas, cssWidth, cssHeight) {
    const dpr = clamp(window.devicePixelRatio || 1, 1, 3);
    const w = Math.round(cssWidth * dpr);
    const h = Math.round(cssHeight * dpr);
    if (canvas.width !== w) canvas.width = w;
    if (canvas.height !== h) canvas.height = h;
    return dpr;
  }

  /** Why a page has no model, and how to train one: the catalogue's sentence per kind of model. */
  const NO_MODEL = { digits: "error.no_model.digits", text: "error.no_model.text", seq2seq: "error.no_model.seq2seq" };

  /**
   * The model of `kind` ("digits", "text" or "seq2seq") that the server reports in /api/health, or null
   * after saying in the status line why there is none and how to train one.
   */
  async function servedModel(kind) {
    setStatus(t("common.loading_model"), "busy");
    let answer;
    try {
      answer = await health();
    } catch (err) {
      showError(err, t("error.health"));
      return null;
    }
    const model = answer && answer[kind];
    if (!model) {
      setStatus(t(NO_MODEL[kind]), "error");
      return null;
    }
    return model;
  }

  // ---------------------------------------------------------------- saving and sharing views

  /** Download `canvas` as a PNG file called `name`; resolves once the download has been handed over. */
  function savePNG(canvas, name) {
    return new Promise((resolve, reject) => {
      canvas.toBlob((blob) => {
        if (!blob) {
          reject(new Error(t("error.png")));
          return;
        }
        const url = URL.createObjectURL(blob);
        const link = el("a", { href: url, download: name, hidden: true });
        document.body.append(link);
        link.click();
        link.remove();
        setTimeout(() => URL.revokeObjectURL(url), 5000);
        resolve();
      }, "image/png");
    });
  }

  const LABEL_FONT = "13px system-ui, sans-serif";

  /**
   * One canvas holding `rows` (arrays of equally sized canvases) as a grid with `rowLabels` at the left
   * and `colLabels` on top, on white: each cell is drawn at its pixel size, `gap` pixels apart.
   * Size: width = left + columns·(cell + gap), height = top + rows·(cell + gap), where left = 70 and
   * top = 22 when there are labels.
   */
  function composeGrid(rows, rowLabels = [], colLabels = [], gap = 4) {
    const cellW = rows[0][0].width;
    const cellH = rows[0][0].height;
    const left = rowLabels.length ? 70 : 0;
    const top = colLabels.length ? 22 : 0;
    const columns = Math.max(...rows.map((row) => row.length));
    const out = document.createElement("canvas");
    out.width = left + columns * (cellW + gap);
    out.height = top + rows.length * (cellH + gap);
    const ctx = out.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, out.width, out.height);
    ctx.fillStyle = "#222";
    ctx.font = LABEL_FONT;
    ctx.textBaseline = "middle";
    colLabels.forEach((label, c) => {
      ctx.textAlign = "center";
      ctx.fillText(label, left + c * (cellW + gap) + cellW / 2, top / 2);
    });
    rows.forEach((row, r) => {
      ctx.textAlign = "left";
      if (rowLabels[r]) ctx.fillText(rowLabels[r], 4, top + r * (cellH + gap) + cellH / 2);
      row.forEach((cell, c) => ctx.drawImage(cell, left + c * (cellW + gap), top + r * (cellH + gap)));
    });
    return out;
  }

  /** A canvas holding `canvas` with `caption` written under it, on white (height + 26 pixels). */
  function withCaption(canvas, caption) {
    const out = document.createElement("canvas");
    out.width = canvas.width;
    out.height = canvas.height + 26;
    const ctx = out.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, out.width, out.height);
    ctx.drawImage(canvas, 0, 0);
    ctx.fillStyle = "#222";
    ctx.font = LABEL_FONT;
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    ctx.fillText(caption, out.width / 2, canvas.height + 13);
    return out;
  }

  /** Bytes (Uint8Array) as base64url text (URL-safe, no padding). */
  function toBase64Url(bytes) {
    let binary = "";
    for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  /** base64url text back to bytes; throws on text that is not base64url. */
  function fromBase64Url(text) {
    if (!/^[A-Za-z0-9_-]*$/.test(text)) throw new Error("not base64url");
    const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
    const binary = atob(padded);
    return Uint8Array.from(binary, (c) => c.charCodeAt(0));
  }

  /** The page's shared state: the URL fragment's parameters (`#prompt=…&seed=3`). */
  function readState() {
    return new URLSearchParams(location.hash.replace(/^#/, ""));
  }

  /** Put `state` (an object; null and undefined values are left out) in the URL fragment, replacing it. */
  function writeState(state) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(state)) {
      if (value !== null && value !== undefined && value !== "") params.set(key, String(value));
    }
    const hash = params.toString();
    history.replaceState(null, "", hash ? `#${hash}` : location.pathname + location.search);
    keepViewInLanguageLinks();
  }

  /** The menu's language links open this view: the same state after `#`, in the other language. */
  function keepViewInLanguageLinks() {
    for (const link of document.querySelectorAll("a[hreflang]")) link.hash = location.hash;
  }

  /** The page's link with its state and its language (`?lang=`), so that it opens as the reader sees it. */
  function pageLink() {
    const url = new URL(location.href);
    url.searchParams.set("lang", LANG);
    return url.href;
  }

  /** An integer parameter of `state` within [lo, hi], else null (a garbled link is ignored, not obeyed). */
  function intParam(state, name, lo, hi) {
    const text = state.get(name);
    if (text === null || !/^-?\d+$/.test(text)) return null;
    const value = Number(text);
    return value >= lo && value <= hi ? value : null;
  }

  /**
   * Copy the page's link (with its state) to the clipboard; where the clipboard is not available (a
   * page served over plain HTTP to another machine), show the link selected in a text field instead.
   */
  async function copyLink(button) {
    const link = pageLink();
    try {
      if (!navigator.clipboard || !window.isSecureContext) throw new Error("clipboard");
      await navigator.clipboard.writeText(link);
      setStatus(t("common.link_copied"), "ok");
    } catch (_) {
      let field = document.getElementById("share-link");
      if (!field) {
        field = el("input", { id: "share-link", type: "text", readonly: true, "aria-label": t("common.link_label") });
        button.after(field);
      }
      field.value = link;
      field.hidden = false;
      field.select();
      setStatus(t("common.copy_selected_link"), "info");
    }
  }

  keepViewInLanguageLinks();

  window.LF = Object.freeze({
    lang: LANG,
    t,
    tNodes,
    plural,
    number,
    percent,
    listNodes,
    modelName,
    modelSummary,
    savePNG,
    composeGrid,
    withCaption,
    toBase64Url,
    fromBase64Url,
    readState,
    writeState,
    intParam,
    copyLink,
    servedModel,
    setStatus,
    showError,
    isAbort,
    errorFromResponse,
    fetchJSON,
    postJSON,
    health,
    colormap,
    colormapCSS,
    drawLegend,
    clamp,
    maxOf,
    el,
    fitCanvas,
  });
})();

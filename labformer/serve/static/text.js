/*
 * labformer serve — the text page: stream a character GPT's continuation of a prompt, then click a
 * character to see how much it attends to each earlier character, head by head (BertViz-like).
 *
 * The text (prompt + generated) is kept as an array of characters (Unicode code points, as Python
 * counts them); #output holds one <span class="char" data-index="i"> per character.
 */
"use strict";

(function () {
  const HIGHLIGHT = [234, 128, 0]; // warm orange: text shading and bars (alpha ∝ weight)
  const CELL_W = 120; // CSS size of one head cell's bar strip
  const CELL_H = 30;
  const SPEED_EVERY_MS = 250; // how often the live character count refreshes while streaming
  const KEY_DELAY_MS = 150; // arrow keys: wait this long before asking for attention

  const promptEl = document.getElementById("prompt");
  const tokensEl = document.getElementById("tokens");
  const temperatureEl = document.getElementById("temperature");
  const topKEl = document.getElementById("top-k");
  const seedEl = document.getElementById("seed");
  const generateButton = document.getElementById("generate");
  const stopButton = document.getElementById("stop");
  const output = document.getElementById("output");
  const speedEl = document.getElementById("speed");
  const layerSelect = document.getElementById("layer");
  const headSelect = document.getElementById("head");
  const headGrid = document.getElementById("head-grid");
  const summaryEl = document.getElementById("attn-summary");
  const modelInfo = document.getElementById("model-info");
  const copyButton = document.getElementById("copy-link");
  const saveTextButton = document.getElementById("save-text");
  const saveGridButton = document.getElementById("save-grid");

  /** The text shown in #output, one entry per character, and the matching spans. */
  let chars = [];
  let spans = [];
  let promptLength = 0;

  /** Whether a text model is served, and its shape from /api/health. */
  let enabled = false;
  let blockSize = 0;

  /** The settings of the text shown (its seed chosen by the page when the field was empty): the link. */
  let written = null;

  /** Generation: whether a stream is running, and the controller that stops it. */
  let streaming = false;
  let streamController = null;

  /** Attention: the selected character, the request in flight, and the last answer. */
  let selectedIndex = -1;
  let attnController = null;
  let keyTimer = 0;
  /** {start, T, layers, heads, attention, index}: token j of the answer is character start + j. */
  let attn = null;
  /** Spans currently shaded, so the next highlight can clear exactly those. */
  let highlighted = [];
  /** Current size of the head grid and selects, rebuilt only when L or H change. */
  let shape = { layers: 0, heads: 0 };

  // ---------------------------------------------------------------- the text and its spans

  /** Append characters to #output as spans (prompt characters get the "prompt" class). */
  function appendChars(newChars, isPrompt) {
    const fragment = document.createDocumentFragment();
    for (const c of newChars) {
      const span = document.createElement("span");
      span.className = "char";
      span.classList.toggle("prompt", isPrompt);
      span.dataset.index = String(chars.length);
      span.textContent = c;
      chars.push(c);
      spans.push(span);
      fragment.append(span);
    }
    output.append(fragment);
  }

  /** Show the prompt alone in #output (forgetting any generated text and selection). */
  function renderPrompt() {
    forgetAttention();
    output.replaceChildren();
    chars = [];
    spans = [];
    appendChars(Array.from(promptEl.value), true);
    promptLength = chars.length;
  }

  /** True when #output is scrolled (nearly) to its bottom, so new text should keep it there. */
  function atBottom() {
    return output.scrollTop + output.clientHeight >= output.scrollHeight - 24;
  }

  // ---------------------------------------------------------------- generation

  /** Read and check the sampling settings; throws an Error with a readable message. */
  function readSettings() {
    const fail = (message) => {
      throw new Error(message);
    };
    for (const [input, field] of [[tokensEl, "text.field.tokens"], [temperatureEl, "text.field.temperature"],
      [topKEl, "text.field.top_k"], [seedEl, "text.field.seed"]]) {
      if (input.validity && input.validity.badInput) fail(LF.t("text.not_a_number", { field: LF.t(field) }));
    }
    const tokens = Number(tokensEl.value);
    if (!Number.isInteger(tokens) || tokens < 1 || tokens > 2000) fail(LF.t("text.bad_tokens"));
    const temperature = Number(temperatureEl.value);
    if (temperatureEl.value.trim() === "" || !Number.isFinite(temperature) || temperature <= 0) {
      fail(LF.t("text.bad_temperature"));
    }
    let topK = null;
    if (topKEl.value.trim() !== "") {
      topK = Number(topKEl.value);
      if (!Number.isInteger(topK) || topK < 1) fail(LF.t("text.bad_top_k"));
    }
    // No seed given: the page draws one, so that the link of the text writes it again.
    let seed = Math.floor(Math.random() * 2 ** 31);
    if (seedEl.value.trim() !== "") {
      seed = Number(seedEl.value);
      if (!Number.isSafeInteger(seed) || seed < 0) fail(LF.t("text.bad_seed"));
    }
    return { prompt: promptEl.value, tokens, temperature, top_k: topK, seed };
  }

  /** Enable or disable the controls for the current state (model served, streaming or not). */
  function updateControls() {
    generateButton.disabled = !enabled || streaming;
    stopButton.disabled = !streaming;
    for (const input of [promptEl, tokensEl, temperatureEl, topKEl, seedEl]) input.disabled = !enabled || streaming;
    layerSelect.disabled = !enabled;
    headSelect.disabled = !enabled;
    output.classList.toggle("streaming", streaming);
  }

  /** Format a characters-per-second line for #speed. */
  function speedText(count, ms, finished) {
    const seconds = ms / 1000;
    const rate = seconds > 0 ? count / seconds : 0;
    const characters = LF.plural("text.characters", count);
    if (!finished) return LF.t("text.so_far", { characters });
    return LF.t("text.speed", { characters, seconds: LF.number(seconds, 1), rate: LF.number(rate, 1) });
  }

  /** Ask the server to continue the prompt and append the characters as they stream in. */
  async function generate() {
    if (!enabled || streaming) return;
    let settings;
    try {
      settings = readSettings();
    } catch (err) {
      LF.showError(err);
      return;
    }
    renderPrompt();
    written = null;
    const controller = new AbortController();
    streamController = controller;
    streaming = true;
    updateControls();
    speedEl.textContent = "";
    LF.setStatus(LF.t("text.writing"), "busy");
    const started = performance.now();
    let lastSpeed = 0;
    let count = 0;
    let received = false;

    /** Append a decoded piece of the stream and keep the view scrolled to the end. */
    const append = (text) => {
      if (!text) return;
      const follow = atBottom();
      const newChars = Array.from(text);
      appendChars(newChars, false);
      count += newChars.length;
      if (follow) output.scrollTop = output.scrollHeight;
      const now = performance.now();
      if (now - lastSpeed >= SPEED_EVERY_MS) {
        lastSpeed = now;
        speedEl.textContent = speedText(count, now - started, false);
      }
    };

    try {
      let response;
      try {
        response = await fetch("/api/text/generate", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(settings),
          signal: controller.signal,
        });
      } catch (err) {
        if (LF.isAbort(err)) throw err;
        throw new Error(LF.t("error.unreachable"));
      }
      if (!response.ok) throw await LF.errorFromResponse(response);
      received = true;
      const decoder = new TextDecoder("utf-8");
      if (response.body && typeof response.body.getReader === "function") {
        const reader = response.body.getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          append(decoder.decode(value, { stream: true }));
        }
      } else {
        append(decoder.decode(new Uint8Array(await response.arrayBuffer()), { stream: true }));
      }
      append(decoder.decode());
      speedEl.textContent = speedText(count, performance.now() - started, true);
      LF.setStatus(LF.t("text.done"), "ok");
      written = { ...settings, tokens: count };
    } catch (err) {
      if (LF.isAbort(err)) {
        if (count > 0) written = { ...settings, tokens: count }; // the same seed writes this beginning again
        speedEl.textContent = speedText(count, performance.now() - started, true);
        LF.setStatus(LF.plural("text.stopped", count), "info");
      } else if (received) {
        speedEl.textContent = speedText(count, performance.now() - started, true);
        LF.showError(err, LF.t("text.stream_broke"));
      } else {
        LF.showError(err, LF.t("text.generation_failed"));
      }
    } finally {
      streaming = false;
      if (streamController === controller) streamController = null;
      updateControls();
      saveState();
    }
  }

  /** Stop the running generation (the characters received so far stay). */
  function stop() {
    if (streamController) streamController.abort();
  }

  // ---------------------------------------------------------------- attention

  /** Forget the selection and the attention answer, and clear every highlight. */
  function forgetAttention() {
    if (attnController) attnController.abort();
    attnController = null;
    clearTimeout(keyTimer);
    selectedIndex = -1;
    attn = null;
    clearHighlight();
    drawHeadGrid();
    summaryEl.textContent = LF.t("text.click_a_character");
  }

  /** Mark span `index` as the selected one (class "selected"). */
  function markSelected(index) {
    if (selectedIndex >= 0 && spans[selectedIndex]) spans[selectedIndex].classList.remove("selected");
    selectedIndex = index;
    const span = spans[index];
    if (span) {
      span.classList.add("selected");
      span.scrollIntoView({ block: "nearest", inline: "nearest" });
    }
  }

  /**
   * Select character `index` and ask for its attention (after `delay` ms, so that holding an arrow
   * key does not flood the server). Any earlier request still in flight is aborted.
   */
  function selectChar(index, delay = 0) {
    if (!enabled || index < 0 || index >= chars.length) return;
    if (streaming) {
      LF.setStatus(LF.t("text.wait"), "info");
      return;
    }
    markSelected(index);
    clearTimeout(keyTimer);
    if (delay > 0) keyTimer = setTimeout(() => requestAttention(index), delay);
    else requestAttention(index);
  }

  /** Check the shape of an /api/text/attention answer; throws a readable Error. */
  function checkAttention(data) {
    const problem = (field) => new Error(LF.t("error.answer_field", { field }));
    if (!data || typeof data !== "object") throw new Error(LF.t("error.answer_not_object"));
    if (!Array.isArray(data.tokens) || data.tokens.length === 0) throw problem("tokens");
    if (!Array.isArray(data.attention) || data.attention.length === 0) throw problem("attention");
    if (!Array.isArray(data.attention[0]) || !Array.isArray(data.attention[0][0])) throw problem("attention");
  }

  /** POST the text up to and including character `index` and show the attention that comes back. */
  async function requestAttention(index) {
    if (attnController) attnController.abort();
    const controller = new AbortController();
    attnController = controller;
    const text = chars.slice(0, index + 1).join("");
    LF.setStatus(LF.t("text.computing", { position: index + 1 }), "busy");
    let data;
    try {
      data = await LF.postJSON("/api/text/attention", { text }, { signal: controller.signal });
      checkAttention(data);
    } catch (err) {
      if (LF.isAbort(err)) return;
      if (controller === attnController) {
        attnController = null;
        LF.showError(err, LF.t("text.attention_failed"));
      }
      return;
    }
    if (controller !== attnController || index !== selectedIndex) return;
    attnController = null;
    const T = data.tokens.length;
    const layers = Number.isInteger(data.layers) ? data.layers : data.attention.length;
    const heads = Number.isInteger(data.heads) ? data.heads : data.attention[0].length;
    // Token j is character offset + j; the last token must be the selected character. Should the
    // server count characters differently, align the last token with the selection instead.
    let start = Number.isInteger(data.offset) ? data.offset : 0;
    if (start + T - 1 !== index) start = index - (T - 1);
    attn = { start, T, layers, heads, attention: data.attention, index, tokens: data.tokens };
    ensureShape(layers, heads);
    drawHeadGrid();
    applyHighlight();
    const status = LF.t("text.attention_of", { position: index + 1 });
    LF.setStatus(start > 0 ? `${status} ${LF.plural("text.dropped", start, { block: T })}` : status, "ok");
  }

  /** The selected character's attention row (T weights) for one layer and head, or the heads' mean. */
  function weightsFor(layer, head) {
    if (!attn) return [];
    const T = attn.T;
    const rowOf = (h) => {
      const rows = attn.attention[layer] && attn.attention[layer][h];
      const row = Array.isArray(rows) ? rows[T - 1] : null;
      return Array.isArray(row) ? row : [];
    };
    if (head !== "mean") return rowOf(head).slice(0, T).map((w) => Number(w) || 0);
    const mean = new Array(T).fill(0);
    for (let h = 0; h < attn.heads; h++) {
      const row = rowOf(h);
      for (let j = 0; j < T; j++) mean[j] += (Number(row[j]) || 0) / attn.heads;
    }
    return mean;
  }

  /** The layer and head chosen in the selects ({layer: number, head: number | "mean"}). */
  function choice() {
    const layer = Number(layerSelect.value) || 0;
    const head = headSelect.value === "mean" || headSelect.value === "" ? "mean" : Number(headSelect.value);
    return { layer, head };
  }

  /** CSS colour of the highlight at normalised weight `v` (0–1), opacity ∝ v. */
  function highlightColor(v, scale = 0.85) {
    const [r, g, b] = HIGHLIGHT;
    return `rgba(${r}, ${g}, ${b}, ${(LF.clamp(v, 0, 1) * scale).toFixed(3)})`;
  }

  /** Remove the shading from every highlighted span. */
  function clearHighlight() {
    for (const span of highlighted) {
      span.style.backgroundColor = "";
      span.classList.remove("attended");
      delete span.dataset.weight;
    }
    highlighted = [];
  }

  /** Shade the characters the selected one attends to, for the chosen layer and head. */
  function applyHighlight() {
    clearHighlight();
    markActiveCell();
    if (!attn) return;
    const { layer, head } = choice();
    const row = weightsFor(layer, head);
    const max = LF.maxOf(row);
    for (let j = 0; j < row.length; j++) {
      const span = spans[attn.start + j];
      if (!span || attn.start + j < 0) continue;
      span.style.backgroundColor = highlightColor(max > 0 ? row[j] / max : 0);
      span.dataset.weight = row[j].toFixed(4);
      span.classList.add("attended");
      highlighted.push(span);
    }
    showSummary(row, layer, head);
    saveState();
  }

  // ---------------------------------------------------------------- saving and sharing

  /** The link of this view: the settings that write the text, and the selected character, layer and head. */
  function saveState() {
    saveTextButton.disabled = !written;
    saveGridButton.disabled = !attn;
    if (!written) return;
    const { layer, head } = choice();
    const selected = attn ? { char: attn.index + 1, layer: layer + 1, head: head === "mean" ? "mean" : head + 1 } : {};
    LF.writeState({
      prompt: written.prompt, tokens: written.tokens, temperature: written.temperature, top_k: written.top_k,
      seed: written.seed, ...selected,
    });
  }

  /** Open the view of a link: fill the form, write the text again, then select its character and head. */
  async function restoreState() {
    const state = LF.readState();
    if (!state.has("prompt")) return;
    const tokens = LF.intParam(state, "tokens", 1, 2000);
    const seed = LF.intParam(state, "seed", 0, Number.MAX_SAFE_INTEGER);
    const temperature = Number(state.get("temperature"));
    const topK = state.has("top_k") ? LF.intParam(state, "top_k", 1, 1e9) : null;
    if (!state.get("prompt") || tokens === null || seed === null || !(temperature > 0) || (state.has("top_k") && topK === null)) {
      LF.setStatus(LF.t("text.bad_link"), "error");
      return;
    }
    promptEl.value = state.get("prompt");
    tokensEl.value = String(tokens);
    seedEl.value = String(seed);
    temperatureEl.value = String(temperature);
    topKEl.value = topK === null ? "" : String(topK);
    await generate();
    const index = LF.intParam(state, "char", 1, chars.length);
    if (index === null) return;
    const layer = LF.intParam(state, "layer", 1, shape.layers);
    const head = state.get("head") === "mean" ? "mean" : LF.intParam(state, "head", 1, shape.heads);
    if (layer !== null) layerSelect.value = String(layer - 1);
    if (head !== null) headSelect.value = head === "mean" ? "mean" : String(head - 1);
    selectChar(index - 1);
  }

  /** The text as shaded now, drawn on a canvas: one 11×22-pixel cell per character, 80 to a line. */
  function textPicture() {
    const CELL_W = 11;
    const CELL_H = 22;
    const COLUMNS = 80;
    const places = [];
    let line = 0;
    let column = 0;
    for (const c of chars) {
      places.push([line, column]);
      if (c === "\n" || column === COLUMNS - 1) {
        line += 1;
        column = 0;
      } else column += 1;
    }
    const canvas = document.createElement("canvas");
    canvas.width = COLUMNS * CELL_W + 16;
    const lines = places.length ? places[places.length - 1][0] + 1 : 1; // the last line holding a character
    canvas.height = lines * CELL_H + 16;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.font = "15px ui-monospace, monospace";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    chars.forEach((c, i) => {
      const x = 8 + places[i][1] * CELL_W;
      const y = 8 + places[i][0] * CELL_H;
      const shade = spans[i].style.backgroundColor;
      if (shade) {
        ctx.fillStyle = shade;
        ctx.fillRect(x, y, CELL_W, CELL_H);
      }
      if (i === selectedIndex) {
        ctx.strokeStyle = "#1f4e9c";
        ctx.lineWidth = 2;
        ctx.strokeRect(x + 1, y + 1, CELL_W - 2, CELL_H - 2);
      }
      ctx.fillStyle = i < promptLength ? "#1f4e9c" : "#222";
      if (c !== "\n") ctx.fillText(c, x + CELL_W / 2, y + CELL_H / 2);
    });
    return canvas;
  }

  /** Every head's bar strip, with its labels, as one picture. */
  function gridPicture() {
    const rows = [];
    for (let l = 0; l < shape.layers; l++) {
      rows.push(Array.from({ length: shape.heads }, (_, h) => headGrid.querySelector(`.cell[data-layer="${l}"][data-head="${h}"] canvas`)));
    }
    const rowLabels = rows.map((_, l) => LF.t("common.layer_n", { layer: l + 1 }));
    return LF.composeGrid(rows, rowLabels, Array.from({ length: shape.heads }, (_, h) => LF.t("common.head_n", { head: h + 1 })));
  }

  /** The file name of a saved view: "text-char41-layer2-head3-shading.png". */
  function viewName(what) {
    if (!attn) return `text-${what}.png`;
    const { layer, head } = choice();
    return `text-char${attn.index + 1}-layer${layer + 1}-${head === "mean" ? "mean" : `head${head + 1}`}-${what}.png`;
  }

  /** A visible name for a character: spaces and line breaks are shown as symbols. */
  function showChar(c) {
    if (c === " ") return "␣";
    if (c === "\n") return "⏎";
    if (c === "\t") return "⇥";
    return c;
  }

  /** Write a sentence about the selected character's three strongest targets (text only). */
  function showSummary(row, layer, head) {
    const which = head === "mean"
      ? LF.t("text.layer_mean", { layer: layer + 1 })
      : LF.t("common.layer_head", { layer: layer + 1, head: head + 1 });
    const order = row.map((w, j) => j).sort((a, b) => row[b] - row[a]).slice(0, 3);
    const targets = order.map((j) => {
      const i = attn.start + j;
      const back = attn.index - i;
      const where = back === 0 ? LF.t("text.itself") : LF.t("text.back", { count: back });
      const char = LF.el("code", { text: showChar(chars[i] !== undefined ? chars[i] : attn.tokens[j]) });
      return LF.tNodes("text.target", { char, where, weight: LF.percent(row[j], 0) });
    });
    const list = document.createDocumentFragment();
    list.append(...LF.listNodes(targets));
    const char = LF.el("code", { text: showChar(chars[attn.index]) });
    summaryEl.replaceChildren(...LF.tNodes("text.summary", { char, position: attn.index + 1, which, targets: list }));
  }

  // ---------------------------------------------------------------- layer/head selects and grid

  /** Fill the layer and head selects and build the head grid for L layers and H heads. */
  function ensureShape(layers, heads) {
    if (shape.layers === layers && shape.heads === heads) return;
    shape = { layers, heads };
    const previous = choice();
    layerSelect.replaceChildren();
    for (let l = 0; l < layers; l++) layerSelect.append(LF.el("option", { value: String(l), text: LF.t("common.layer_n", { layer: l + 1 }) }));
    headSelect.replaceChildren(LF.el("option", { value: "mean", text: LF.t("text.all_heads") }));
    for (let h = 0; h < heads; h++) headSelect.append(LF.el("option", { value: String(h), text: LF.t("common.head_n", { head: h + 1 }) }));
    layerSelect.value = String(Math.min(previous.layer, Math.max(layers - 1, 0)));
    headSelect.value = previous.head !== "mean" && previous.head < heads ? String(previous.head) : "mean";
    buildHeadGrid(layers, heads);
  }

  /** Build #head-grid: a labelled L×H grid of buttons (.cell), each holding a small bar canvas. */
  function buildHeadGrid(layers, heads) {
    headGrid.replaceChildren();
    headGrid.style.gridTemplateColumns = `auto repeat(${heads}, auto)`;
    headGrid.append(LF.el("span"));
    for (let h = 0; h < heads; h++) headGrid.append(LF.el("span", { className: "col-label", text: LF.t("common.head_n", { head: h + 1 }) }));
    for (let l = 0; l < layers; l++) {
      headGrid.append(LF.el("button", {
        type: "button",
        className: "row-label",
        title: LF.t("text.shade_layer", { layer: l + 1 }),
        dataset: { layer: String(l) },
        text: LF.t("common.layer_n", { layer: l + 1 }),
      }));
      for (let h = 0; h < heads; h++) {
        const canvas = LF.el("canvas", { "aria-hidden": "true" });
        LF.fitCanvas(canvas, CELL_W, CELL_H);
        headGrid.append(LF.el("button", {
          type: "button",
          className: "cell",
          title: LF.t("common.layer_head", { layer: l + 1, head: h + 1 }),
          "aria-label": LF.t("text.show_head", { layer: l + 1, head: h + 1 }),
          dataset: { layer: String(l), head: String(h) },
        }, [canvas]));
      }
    }
  }

  /** Draw every cell's bar strip: one bar per character the selected one can see, height ∝ weight. */
  function drawHeadGrid() {
    for (const cell of headGrid.querySelectorAll(".cell")) {
      const canvas = cell.querySelector("canvas");
      const ctx = canvas.getContext("2d");
      const W = canvas.width;
      const H = canvas.height;
      ctx.clearRect(0, 0, W, H);
      ctx.fillStyle = "#f3f5f8";
      ctx.fillRect(0, 0, W, H);
      if (!attn) continue;
      const row = weightsFor(Number(cell.dataset.layer), Number(cell.dataset.head));
      const max = LF.maxOf(row);
      if (!row.length || max <= 0) continue;
      const step = W / row.length;
      for (let j = 0; j < row.length; j++) {
        const v = row[j] / max;
        const h = Math.max(v * (H - 2), v > 0 ? 1 : 0);
        ctx.fillStyle = highlightColor(0.35 + 0.65 * v, 1);
        const x0 = Math.floor(j * step);
        const x1 = Math.max(Math.floor((j + 1) * step) - (step >= 3 ? 1 : 0), x0 + 1);
        ctx.fillRect(x0, H - h, x1 - x0, h);
      }
    }
  }

  /** Outline the grid cell(s) matching the selects (a whole layer's row for the mean). */
  function markActiveCell() {
    const { layer, head } = choice();
    for (const cell of headGrid.querySelectorAll(".cell")) {
      const sameLayer = Number(cell.dataset.layer) === layer;
      cell.classList.toggle("active", sameLayer && head !== "mean" && Number(cell.dataset.head) === head);
      cell.classList.toggle("in-mean", sameLayer && head === "mean");
      cell.setAttribute("aria-pressed", String(cell.classList.contains("active")));
    }
  }

  /** Click in the grid: a cell picks its layer and head, a layer label picks that layer's mean. */
  function onGridClick(event) {
    const target = event.target instanceof Element ? event.target.closest(".cell, .row-label") : null;
    if (!target) return;
    layerSelect.value = target.dataset.layer;
    headSelect.value = target.classList.contains("cell") ? target.dataset.head : "mean";
    applyHighlight();
  }

  /** Paint the text page's legend: from no shading to full shading. */
  function drawTextLegend(canvas) {
    const ctx = canvas.getContext("2d");
    for (let x = 0; x < canvas.width; x++) {
      ctx.fillStyle = highlightColor(x / Math.max(canvas.width - 1, 1));
      ctx.fillRect(x, 0, 1, canvas.height);
    }
  }

  // ---------------------------------------------------------------- start-up

  /** Wire up buttons, the prompt, the output (click and arrow keys), the selects and the grid. */
  function bindEvents() {
    generateButton.addEventListener("click", generate);
    stopButton.addEventListener("click", stop);
    promptEl.addEventListener("input", () => {
      // Before anything is generated, #output mirrors the prompt so its characters can be inspected.
      if (!streaming && chars.length === promptLength) renderPrompt();
    });
    promptEl.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        generate();
      }
    });
    output.addEventListener("click", (event) => {
      const span = event.target instanceof Element ? event.target.closest(".char") : null;
      if (span && output.contains(span)) selectChar(Number(span.dataset.index));
    });
    output.addEventListener("keydown", (event) => {
      if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
      if (chars.length === 0) return;
      event.preventDefault();
      const from = selectedIndex < 0 ? chars.length : selectedIndex;
      const to = LF.clamp(from + (event.key === "ArrowLeft" ? -1 : 1), 0, chars.length - 1);
      if (to !== selectedIndex) selectChar(to, KEY_DELAY_MS);
    });
    layerSelect.addEventListener("change", applyHighlight);
    headSelect.addEventListener("change", applyHighlight);
    headGrid.addEventListener("click", onGridClick);
    copyButton.addEventListener("click", () => LF.copyLink(copyButton));
    saveTextButton.addEventListener("click", () => LF.savePNG(textPicture(), viewName("shading")));
    saveGridButton.addEventListener("click", () => LF.savePNG(gridPicture(), viewName("heads")));
  }

  /** Load the model status, then enable the page when a text model is served. */
  async function init() {
    bindEvents();
    for (const legend of document.querySelectorAll("canvas.legend")) drawTextLegend(legend);
    updateControls();
    renderPrompt();
    const text = await LF.servedModel("text");
    if (!text) return;
    blockSize = Number.isInteger(text.block_size) ? text.block_size : 0;
    if (Number.isInteger(text.layers) && Number.isInteger(text.heads)) ensureShape(text.layers, text.heads);
    drawHeadGrid();
    const facts = { name: LF.modelName(text), summary: LF.modelSummary(text), block: LF.number(blockSize) };
    modelInfo.textContent = LF.t(blockSize ? "text.model_info" : "model.info", facts);
    enabled = true;
    updateControls();
    LF.setStatus(LF.t("text.ready"), "info");
    await restoreState();
  }

  init();
})();

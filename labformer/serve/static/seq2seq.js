/*
 * labformer serve — the seq2seq page: an encoder–decoder's output for a typed input, written out one
 * character at a time, and its three kinds of attention (encoder self, decoder self, cross) as heat
 * maps: one enlarged, and a grid of every layer and head. Clicking a written character shades the input
 * by that character's cross-attention.
 *
 * The answer of POST /api/seq2seq/translate holds attention.{encoder, decoder, cross}, each
 * [layer][head][row][column]; rows of decoder and cross are the decoder's positions (one per written
 * character, the end token last), columns of cross the input characters.
 */
"use strict";

(function () {
  const REVEAL_MS = 70; // the output appears character by character, this many ms apart
  const CELL = 14; // CSS pixels per cell of the enlarged map
  const SMALL = 84; // CSS size of a grid map's longer side

  const inputEl = document.getElementById("s2s-input");
  const beamEl = document.getElementById("beam");
  const translateButton = document.getElementById("translate");
  const examplesEl = document.getElementById("examples");
  const outputEl = document.getElementById("s2s-output");
  const sourceEl = document.getElementById("s2s-source");
  const layerSelect = document.getElementById("layer");
  const headSelect = document.getElementById("head");
  const mapCanvas = document.getElementById("s2s-map");
  const mapTitle = document.getElementById("map-title");
  const gridEl = document.getElementById("s2s-grid");
  const modelInfo = document.getElementById("model-info");
  const copyButton = document.getElementById("copy-link");
  const saveMapButton = document.getElementById("save-map");
  const saveGridButton = document.getElementById("save-grid");
  const tabs = Array.from(document.querySelectorAll('[role="tab"]'));

  let enabled = false;
  let model = null; // the served model, as /api/health describes it
  let answer = null; // the last /api/seq2seq/translate answer
  let kind = "cross"; // the attention shown
  let selected = -1; // the selected written position (row of cross)
  let revealTimer = 0;
  let busy = false;
  let pendingView = null; // a link's {kind, layer, head, char}, applied once its output is written

  const NAMES = { cross: "seq2seq.kind.cross", encoder: "seq2seq.kind.encoder", decoder: "seq2seq.kind.decoder" };

  /** Row and column labels of the current kind: [rows, columns]. */
  function labels() {
    const source = answer.source_tokens.map(show);
    const decoder = answer.decoder_tokens.map(show);
    if (kind === "encoder") return [source, source];
    if (kind === "decoder") return [decoder, decoder];
    return [answer.output_tokens.map(show), source];
  }

  function show(c) {
    return c === " " ? "␣" : c;
  }

  /** The matrix of `layer` and `head` of the current kind (head -1: the mean of the layer's heads). */
  function matrix(layer, head) {
    const heads = answer.attention[kind][layer];
    if (head >= 0) return heads[head];
    return heads[0].map((row, i) => row.map((_, j) => heads.reduce((sum, h) => sum + h[i][j], 0) / heads.length));
  }

  /** Paint `m` on `canvas` with `cell` CSS pixels per value (viridis, 0 to 1), labels if `labelled`. */
  function paint(canvas, m, cell, labelled) {
    const [rowLabels, columnLabels] = labelled ? labels() : [[], []];
    const margin = labelled ? 40 : 0;
    const width = margin + m[0].length * cell;
    const height = margin + m.length * cell;
    canvas.style.width = `${width}px`;
    canvas.style.height = `${height}px`;
    const dpr = LF.fitCanvas(canvas, width, height);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    m.forEach((row, i) => row.forEach((value, j) => {
      ctx.fillStyle = LF.colormapCSS("viridis", value);
      ctx.fillRect(margin + j * cell, margin + i * cell, cell, cell);
    }));
    if (!labelled) return;
    ctx.fillStyle = "#334";
    ctx.font = "11px ui-monospace, monospace";
    ctx.textAlign = "center";
    columnLabels.forEach((c, j) => ctx.fillText(c, margin + j * cell + cell / 2, margin - 6));
    ctx.textAlign = "right";
    rowLabels.forEach((c, i) => ctx.fillText(c, margin - 6, margin + i * cell + cell * 0.75));
    if (kind === "cross" && selected >= 0) {
      ctx.strokeStyle = "#e07a00";
      ctx.lineWidth = 2;
      ctx.strokeRect(margin, margin + selected * cell, m[0].length * cell, cell);
    }
  }

  function layer() {
    return Number(layerSelect.value || 0);
  }

  function head() {
    return Number(headSelect.value === "" ? -1 : headSelect.value);
  }

  /** Rebuild the layer and head selects for the current kind (encoder and decoder may differ in depth). */
  function fillSelects() {
    const layers = answer.attention[kind].length;
    const heads = answer.attention[kind][0].length;
    const keepLayer = Math.min(layer(), layers - 1);
    const keepHead = Math.min(head(), heads - 1);
    layerSelect.replaceChildren(...Array.from({ length: layers }, (_, i) => LF.el("option", { value: i, text: i + 1 })));
    headSelect.replaceChildren(
      LF.el("option", { value: -1, text: LF.t("seq2seq.mean_of_heads") }),
      ...Array.from({ length: heads }, (_, i) => LF.el("option", { value: i, text: i + 1 })),
    );
    layerSelect.value = String(Math.max(keepLayer, 0));
    headSelect.value = String(keepHead);
  }

  /** The enlarged map, its title, the grid and the input shading, for the current selection. */
  function render() {
    if (!answer) return;
    const m = matrix(layer(), head());
    paint(mapCanvas, m, CELL, true);
    const which = head() < 0 ? LF.t("seq2seq.mean_of_heads") : LF.t("common.head_n", { head: head() + 1 });
    mapTitle.textContent = LF.t("seq2seq.map_title", { kind: LF.t(NAMES[kind]), layer: layer() + 1, which });
    renderGrid();
    shadeSource();
    saveState();
  }

  // ---------------------------------------------------------------- saving and sharing

  /** The link of this view: the input, the beam, the kind of attention, layer, head and character. */
  function saveState() {
    saveMapButton.disabled = saveGridButton.disabled = !answer;
    if (!answer) return;
    LF.writeState({
      text: answer.text, beam: answer.beam, kind, layer: layer() + 1,
      head: head() < 0 ? "mean" : head() + 1, char: selected >= 0 ? selected + 1 : null,
    });
  }

  /** The view a link asks for, once the answer is written (values out of range are ignored). */
  function applyView(view) {
    if (["cross", "encoder", "decoder"].includes(view.kind)) {
      kind = view.kind;
      for (const tab of tabs) tab.setAttribute("aria-selected", String(tab.dataset.kind === kind));
      fillSelects();
    }
    const layers = answer.attention[kind].length;
    const heads = answer.attention[kind][0].length;
    const l = LF.intParam(view.state, "layer", 1, layers);
    const h = view.state.get("head") === "mean" ? 0 : LF.intParam(view.state, "head", 1, heads);
    if (l !== null) layerSelect.value = String(l - 1);
    if (h !== null) headSelect.value = String(h - 1);
    const position = LF.intParam(view.state, "char", 1, answer.output_tokens.length);
    choose(position === null ? 0 : position - 1);
  }

  /** The grid of every layer and head, with labels, as one picture. */
  function gridPicture() {
    const layers = answer.attention[kind].length;
    const heads = answer.attention[kind][0].length;
    const canvases = Array.from(gridEl.querySelectorAll(".cell canvas"));
    const rows = Array.from({ length: layers }, (_, l) => canvases.slice(l * heads, (l + 1) * heads));
    const rowLabels = rows.map((_, l) => LF.t("common.layer_n", { layer: l + 1 }));
    return LF.composeGrid(rows, rowLabels, Array.from({ length: heads }, (_, h) => LF.t("common.head_n", { head: h + 1 })));
  }

  function viewName(what) {
    const which = head() < 0 ? "mean" : `head${head() + 1}`;
    return `seq2seq-${kind}-layer${layer() + 1}-${which}-${what}.png`;
  }

  function renderGrid() {
    const layers = answer.attention[kind].length;
    const heads = answer.attention[kind][0].length;
    gridEl.style.gridTemplateColumns = `auto repeat(${heads}, auto)`;
    const cells = [LF.el("span")];
    for (let h = 0; h < heads; h++) cells.push(LF.el("span", { className: "col-label", text: LF.t("common.head_n", { head: h + 1 }) }));
    for (let l = 0; l < layers; l++) {
      cells.push(LF.el("button", {
        type: "button", className: "row-label", text: LF.t("common.layer_n", { layer: l + 1 }),
        on: { click: () => select(l, -1) },
      }));
      for (let h = 0; h < heads; h++) {
        const m = answer.attention[kind][l][h];
        const canvas = LF.el("canvas");
        const active = l === layer() && (h === head() || head() < 0);
        const cell = LF.el("button", {
          type: "button", className: `cell${active ? " active" : ""}`, "aria-label": LF.t("common.layer_head", { layer: l + 1, head: h + 1 }),
          on: { click: () => select(l, h) },
        }, [canvas]);
        paint(canvas, m, Math.max(2, Math.floor(SMALL / Math.max(m.length, m[0].length))), false);
        cells.push(cell);
      }
    }
    gridEl.replaceChildren(...cells);
  }

  function select(l, h) {
    layerSelect.value = String(l);
    headSelect.value = String(h);
    render();
  }

  /** Shade each input character by the selected written character's cross-attention (layer, head). */
  function shadeSource() {
    const spans = Array.from(sourceEl.children);
    const row = selected >= 0 ? crossRow(selected) : null;
    const top = row ? LF.maxOf(row) : 0;
    spans.forEach((span, j) => {
      const t = row && top > 0 ? row[j] / top : 0;
      span.style.backgroundColor = row ? `rgba(234, 128, 0, ${(0.85 * t).toFixed(3)})` : "";
      span.title = row ? LF.t("seq2seq.weight", { weight: LF.number(row[j], 3) }) : "";
    });
  }

  function crossRow(position) {
    const l = Math.min(layer(), answer.attention.cross.length - 1);
    const heads = answer.attention.cross[l];
    if (kind === "cross" && head() >= 0) return heads[head()][position];
    return heads[0][position].map((_, j) => heads.reduce((sum, h) => sum + h[position][j], 0) / heads.length);
  }

  function choose(position) {
    selected = position;
    Array.from(outputEl.children).forEach((span, i) => span.classList.toggle("selected", i === position));
    render();
  }

  function setKind(next) {
    kind = next;
    for (const tab of tabs) tab.setAttribute("aria-selected", String(tab.dataset.kind === kind));
    fillSelects();
    render();
  }

  /** The month `month` (1–12) by name, in the page's language. */
  function monthName(month) {
    return new Intl.DateTimeFormat(LF.lang, { month: "long", timeZone: "UTC" }).format(new Date(Date.UTC(2000, month - 1, 1)));
  }

  /**
   * What to tell the reader about an answer, in the page's language (the API's `warnings` say the same in
   * English): no four-digit year in the input, not a real date, a year outside those the model learnt, or
   * unsure.
   */
  function warnings(answer) {
    const found = answer.year_in_input === false ? [LF.t("seq2seq.no_year")] : [];
    const calendar = answer.calendar;
    if (calendar && calendar.problem === "form") found.push(LF.t("seq2seq.not_a_date.form", { text: calendar.text }));
    else if (calendar && calendar.problem === "month") found.push(LF.t("seq2seq.not_a_date.month", { month: calendar.month }));
    else if (calendar && calendar.problem === "day") {
      found.push(LF.t("seq2seq.not_a_date.day", { month: monthName(calendar.month), year: calendar.year, days: calendar.days }));
    } else if (calendar && calendar.outside) {
      const [first, last] = model.years || ["?", "?"];
      found.push(LF.t("seq2seq.outside", { year: calendar.year, first, last }));
    }
    if (answer.unsure) {
      const probability = LF.number(answer.least_probability, 3, 2);
      found.push(LF.t("seq2seq.unsure", { probability, limit: LF.number(answer.unsure_below, 2, 0) }));
    }
    return found;
  }

  /** The status line of an answer: what was read and written, and what to doubt about it. */
  function answerStatus(answer) {
    let status = LF.t("seq2seq.answer", { input: answer.text, output: answer.output });
    if (answer.unknown_characters.length) {
      status += ` ${LF.t("seq2seq.unknown", { characters: answer.unknown_characters.join("") })}`;
    }
    const doubts = warnings(answer);
    if (doubts.length) status += ` — ${doubts.join(LF.t("seq2seq.warning_separator"))}`;
    LF.setStatus(status, doubts.length ? "warn" : "ok");
  }

  /** Ask for the output of the input field and show it character by character. */
  async function translate() {
    if (!enabled || busy) return;
    const text = inputEl.value;
    const beam = Number(beamEl.value);
    if (!text) return LF.setStatus(LF.t("seq2seq.empty"), "error");
    if (!Number.isInteger(beam) || beam < 1 || beam > 16) return LF.setStatus(LF.t("seq2seq.bad_beam"), "error");
    busy = true;
    translateButton.disabled = true;
    LF.setStatus(LF.t("seq2seq.reading"), "busy");
    try {
      answer = await LF.postJSON("/api/seq2seq/translate", { text, beam });
    } catch (err) {
      LF.showError(err);
      return;
    } finally {
      busy = false;
      translateButton.disabled = !enabled;
    }
    clearTimeout(revealTimer);
    sourceEl.replaceChildren(...answer.source_tokens.map((c) => LF.el("span", { className: "s2s-char", text: show(c) })));
    outputEl.replaceChildren();
    selected = -1;
    fillSelects();
    render();
    let i = 0;
    const reveal = () => {
      if (i >= answer.output_tokens.length) {
        outputEl.dataset.done = "true";
        answerStatus(answer);
        if (pendingView) applyView(pendingView);
        else choose(0);
        pendingView = null;
        return;
      }
      const position = i;
      const probability = answer.probabilities[position];
      outputEl.append(LF.el("button", {
        type: "button", className: `s2s-char written${probability < answer.unsure_below ? " unsure" : ""}`,
        title: LF.t("seq2seq.probability", { probability: LF.number(probability, 3) }),
        dataset: { index: position }, on: { click: () => choose(position) },
      }, [LF.el("span", { text: show(answer.output_tokens[position]) }),
        LF.el("small", { text: LF.number(probability, 2) })]));
      i += 1;
      revealTimer = setTimeout(reveal, REVEAL_MS);
    };
    delete outputEl.dataset.done;
    reveal();
  }

  async function start() {
    LF.drawLegend(document.querySelector("canvas.legend"), "viridis");
    model = await LF.servedModel("seq2seq");
    if (!model) return;
    enabled = true;
    modelInfo.textContent = LF.t("seq2seq.model_info", {
      name: LF.modelName(model), summary: LF.modelSummary(model),
      encoder: model.encoder_layers, decoder: model.decoder_layers, heads: model.heads,
    });
    for (const example of model.examples) {
      examplesEl.append(LF.el("button", {
        type: "button", className: "example", text: example,
        on: { click: () => { inputEl.value = example; translate(); } },
      }));
    }
    translateButton.disabled = false;
    const state = LF.readState();
    if (state.has("text")) {
      const beam = LF.intParam(state, "beam", 1, 16);
      if (!state.get("text") || (state.has("beam") && beam === null)) {
        LF.setStatus(LF.t("seq2seq.bad_link"), "error");
        return;
      }
      inputEl.value = state.get("text");
      beamEl.value = String(beam || 1);
      pendingView = { kind: state.get("kind"), state };
    }
    await translate();
  }

  translateButton.disabled = true;
  translateButton.addEventListener("click", translate);
  inputEl.addEventListener("keydown", (event) => {
    if (event.key === "Enter") translate();
  });
  layerSelect.addEventListener("change", render);
  headSelect.addEventListener("change", render);
  for (const tab of tabs) tab.addEventListener("click", () => setKind(tab.dataset.kind));
  copyButton.addEventListener("click", () => LF.copyLink(copyButton));
  saveMapButton.addEventListener("click", () => LF.savePNG(LF.withCaption(mapCanvas, mapTitle.textContent), viewName("map")));
  saveGridButton.addEventListener("click", () => LF.savePNG(gridPicture(), viewName("heads")));
  start();
})();

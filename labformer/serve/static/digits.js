/*
 * labformer serve — the digits page: draw a digit, get the ViT's prediction live, and see the class
 * token's attention over the image patches for every head of every layer, plus attention rollout.
 *
 * Flow: pointer strokes are kept as lists of points and drawn on #pad; each change schedules a
 * prediction (debounced, at most one request in flight); the answer fills #prediction, #bars,
 * #input28, the #heads grid, #rollout and the #zoom panel.
 */
"use strict";

(function () {
  const STROKE_WIDTH = 18; // px on the 280×280 pad, like a thick MNIST pen
  const DEBOUNCE_MS = 150; // wait this long after the last change before predicting
  const MAX_WAIT_MS = 400; // but while drawing continuously, predict at least this often
  const HEAD_CSS = 84; // CSS size of one head's canvas
  const ROLLOUT_CSS = 168;
  const ZOOM_CSS = 280;
  const CMAP = "inferno";
  const SENT_SIDE = 56; // the pad is sent as a PNG of this side: small enough to travel in a link
  const FILE_SIDE = 112; // an image file is sent scaled to at most this side, for the same reason

  const pad = document.getElementById("pad");
  const padCtx = pad.getContext("2d");
  const clearButton = document.getElementById("clear");
  const undoButton = document.getElementById("undo");
  const fileInput = document.getElementById("file");
  const dropLabel = document.getElementById("drop");
  const predictionEl = document.getElementById("prediction");
  const barsEl = document.getElementById("bars");
  const input28 = document.getElementById("input28");
  const headsEl = document.getElementById("heads");
  const rolloutCanvas = document.getElementById("rollout");
  const zoomCanvas = document.getElementById("zoom-canvas");
  const zoomLabel = document.getElementById("zoom-label");
  const zoomDetail = document.getElementById("zoom-detail");
  const modelInfo = document.getElementById("model-info");
  const saveButtons = document.querySelectorAll("button[data-save]");
  const copyButton = document.getElementById("copy-link");

  /** Drawing state: finished and current strokes (lists of {x, y} in pad pixels). */
  let strokes = [];
  let currentStroke = null;
  let activePointer = null;
  /** An uploaded (or shared) image drawn under the strokes, and the PNG bytes sent for it. */
  let preview = null;
  let previewFile = null;
  /** The bytes of the last answered image, as base64url: the `digit` of this page's link. */
  let sentDigit = "";

  /** Whether a digit model is loaded (controls are disabled otherwise). */
  let enabled = false;
  /** Class labels and patch-grid size from /api/health (e.g. "0".."9", 4). */
  let classes = [];
  let healthGrid = 0;

  /** Prediction scheduling. */
  let debounceTimer = 0;
  let burstStart = 0;
  let inFlight = false;
  let pending = false;

  /** The last successful answer, and the 28×28 input drawn on a small offscreen canvas. */
  let result = null;
  let inputImage = null;
  /** Which map the zoom panel shows: {kind: "head", layer, head} or {kind: "rollout"}. */
  let zoomTarget = { kind: "head", layer: 0, head: 0 };
  /** Current size of the heads grid, so it is rebuilt only when L or H change. */
  let gridShape = { layers: 0, heads: 0 };

  // ---------------------------------------------------------------- drawing on the pad

  /** True when the pad holds neither strokes nor an uploaded image. */
  function isEmpty() {
    return strokes.length === 0 && preview === null;
  }

  /** Convert a pointer event's position to pad pixel coordinates (the pad may be CSS-scaled). */
  function padPoint(event) {
    const rect = pad.getBoundingClientRect();
    return {
      x: ((event.clientX - rect.left) * pad.width) / rect.width,
      y: ((event.clientY - rect.top) * pad.height) / rect.height,
    };
  }

  /** Set the pen style: white, round, STROKE_WIDTH wide. */
  function setPen() {
    padCtx.strokeStyle = "#fff";
    padCtx.fillStyle = "#fff";
    padCtx.lineWidth = STROKE_WIDTH;
    padCtx.lineCap = "round";
    padCtx.lineJoin = "round";
  }

  /** Draw one whole stroke (a dot when it has a single point). */
  function drawStroke(points) {
    if (points.length === 0) return;
    setPen();
    if (points.length === 1) {
      padCtx.beginPath();
      padCtx.arc(points[0].x, points[0].y, STROKE_WIDTH / 2, 0, Math.PI * 2);
      padCtx.fill();
      return;
    }
    padCtx.beginPath();
    padCtx.moveTo(points[0].x, points[0].y);
    for (let i = 1; i < points.length; i++) padCtx.lineTo(points[i].x, points[i].y);
    padCtx.stroke();
  }

  /** Draw the segment from point `a` to point `b` (incremental drawing while the pen moves). */
  function drawSegment(a, b) {
    setPen();
    padCtx.beginPath();
    padCtx.moveTo(a.x, a.y);
    padCtx.lineTo(b.x, b.y);
    padCtx.stroke();
  }

  /** Draw the uploaded image scaled to fit the pad, centred, on black. */
  function drawPreview() {
    const iw = preview.width;
    const ih = preview.height;
    if (!iw || !ih) return;
    const scale = Math.min(pad.width / iw, pad.height / ih);
    const w = iw * scale;
    const h = ih * scale;
    padCtx.imageSmoothingEnabled = true;
    padCtx.drawImage(preview, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
  }

  /** Repaint the pad from scratch: black, the uploaded image if any, then every stroke. */
  function redrawPad() {
    padCtx.fillStyle = "#000";
    padCtx.fillRect(0, 0, pad.width, pad.height);
    if (preview) drawPreview();
    for (const stroke of strokes) drawStroke(stroke);
  }

  /** Pointer down: start a stroke (left mouse button, pen or finger; one pointer at a time). */
  function onPointerDown(event) {
    if (!enabled || activePointer !== null) return;
    if (event.pointerType === "mouse" && event.button !== 0) return;
    event.preventDefault();
    pad.setPointerCapture(event.pointerId);
    activePointer = event.pointerId;
    currentStroke = [padPoint(event)];
    strokes.push(currentStroke);
    drawStroke(currentStroke);
    changed();
  }

  /** Pointer move: extend the current stroke with every coalesced point since the last event. */
  function onPointerMove(event) {
    if (event.pointerId !== activePointer || !currentStroke) return;
    event.preventDefault();
    const events = typeof event.getCoalescedEvents === "function" ? event.getCoalescedEvents() : [];
    for (const e of events.length ? events : [event]) {
      const point = padPoint(e);
      const last = currentStroke[currentStroke.length - 1];
      if (Math.abs(point.x - last.x) + Math.abs(point.y - last.y) < 0.5) continue;
      currentStroke.push(point);
      drawSegment(last, point);
    }
    changed();
  }

  /** Pointer up / cancel / capture lost: finish the stroke and predict soon. */
  function onPointerEnd(event) {
    if (event.pointerId !== activePointer) return;
    activePointer = null;
    currentStroke = null;
    changed();
  }

  /** Remove the last stroke (or, with no strokes left, the uploaded image). */
  function undo() {
    if (!enabled || activePointer !== null) return;
    if (strokes.length > 0) strokes.pop();
    else if (preview) {
      preview = null;
      previewFile = null;
    } else return;
    redrawPad();
    changed();
  }

  /** Clear strokes and any uploaded image. */
  function clearPad() {
    if (!enabled) return;
    strokes = [];
    currentStroke = null;
    activePointer = null;
    preview = null;
    previewFile = null;
    redrawPad();
    changed();
  }

  /** Enable the undo button only when there is something to undo. */
  function updateButtons() {
    undoButton.disabled = !enabled || isEmpty();
    clearButton.disabled = !enabled || isEmpty();
  }

  // ---------------------------------------------------------------- uploaded images

  /** Decode an image file into something drawImage accepts (ImageBitmap or <img>). */
  function loadImage(file) {
    if (typeof createImageBitmap === "function") return createImageBitmap(file);
    return new Promise((resolve, reject) => {
      const url = URL.createObjectURL(file);
      const img = new Image();
      img.onload = () => {
        URL.revokeObjectURL(url);
        resolve(img);
      };
      img.onerror = () => {
        URL.revokeObjectURL(url);
        reject(new Error("decode"));
      };
      img.src = url;
    });
  }

  /** Use an image file: show it on the pad (strokes cleared) and send its own bytes to the model. */
  async function useFile(file) {
    if (!enabled || !file) return;
    if (file.type !== "image/png" && file.type !== "image/jpeg") {
      const message = file.type ? LF.t("digits.wrong_type", { name: file.name, type: file.type }) : LF.t("digits.unknown_type", { name: file.name });
      LF.setStatus(message, "error");
      return;
    }
    let image;
    try {
      image = await loadImage(file);
    } catch (_) {
      LF.setStatus(LF.t("digits.unreadable", { name: file.name }), "error");
      return;
    }
    strokes = [];
    currentStroke = null;
    activePointer = null;
    preview = image;
    previewFile = await scaledPNG(image, FILE_SIDE);
    redrawPad();
    changed(true);
  }

  /** `image` (a bitmap or canvas) as PNG bytes, scaled down to at most `side` pixels a side. */
  function scaledPNG(image, side) {
    const scale = Math.min(1, side / Math.max(image.width, image.height));
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(image.width * scale));
    canvas.height = Math.max(1, Math.round(image.height * scale));
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = true;
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
    return new Promise((resolve, reject) => {
      canvas.toBlob((blob) => (blob ? resolve(blob) : reject(new Error(LF.t("error.png")))), "image/png");
    });
  }

  /** Mark an element as a drop target for image files (highlight while a file hovers over it). */
  function makeDropTarget(element) {
    element.addEventListener("dragenter", (event) => {
      event.preventDefault();
      element.classList.add("dragover");
    });
    element.addEventListener("dragover", (event) => {
      event.preventDefault();
      if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
      element.classList.add("dragover");
    });
    element.addEventListener("dragleave", () => element.classList.remove("dragover"));
    element.addEventListener("drop", (event) => {
      event.preventDefault();
      event.stopPropagation();
      element.classList.remove("dragover");
      const files = event.dataTransfer ? event.dataTransfer.files : null;
      if (files && files.length > 0) useFile(files[0]);
    });
  }

  // ---------------------------------------------------------------- prediction scheduling

  /**
   * Something changed on the pad: predict ~150 ms after the last change, but at least every
   * 400 ms while the pen keeps moving; `now` predicts at once (an uploaded file).
   */
  function changed(now = false) {
    updateButtons();
    document.body.dataset.predicting = "yes"; // "no" once the answer to the last change is shown
    const t = performance.now();
    if (!debounceTimer) burstStart = t;
    clearTimeout(debounceTimer);
    const wait = now || t - burstStart >= MAX_WAIT_MS ? 0 : DEBOUNCE_MS;
    debounceTimer = setTimeout(() => {
      debounceTimer = 0;
      predictNow();
    }, wait);
  }

  /**
   * The bytes to send: the uploaded or shared image's PNG when nothing is drawn over it, else the pad
   * scaled to SENT_SIDE pixels as PNG (the model reads 28×28: nothing it uses is lost).
   */
  async function currentImage() {
    if (previewFile && strokes.length === 0) return { body: previewFile, type: "image/png" };
    return { body: await scaledPNG(pad, SENT_SIDE), type: "image/png" };
  }

  /** Send the current image unless a request is in flight (then send again when it returns). */
  async function predictNow() {
    if (!enabled) return;
    if (inFlight) {
      pending = true;
      return;
    }
    if (isEmpty()) {
      clearResults();
      document.body.dataset.predicting = "no";
      return;
    }
    inFlight = true;
    try {
      const { body, type } = await currentImage();
      const data = await LF.fetchJSON("/api/digits/predict", {
        method: "POST",
        headers: { "Content-Type": type },
        body,
      });
      checkAnswer(data);
      sentDigit = LF.toBase64Url(new Uint8Array(await body.arrayBuffer()));
      if (isEmpty()) clearResults();
      else if (data.empty) {
        clearResults();
        LF.setStatus(LF.t("digits.empty"), "info");
      } else {
        render(data);
        saveState();
        const p = Math.max(...data.probabilities);
        LF.setStatus(LF.t("digits.answer", { digit: data.prediction, probability: LF.percent(p) }), "ok");
      }
    } catch (err) {
      LF.showError(err, LF.t("digits.prediction_failed"));
    } finally {
      inFlight = false;
      if (pending) {
        pending = false;
        predictNow();
      } else if (!debounceTimer) document.body.dataset.predicting = "no";
    }
  }

  /** Throw a readable Error when the answer lacks a field this page needs. */
  function checkAnswer(data) {
    const problem = (field) => new Error(LF.t("error.answer_field", { field }));
    if (!data || typeof data !== "object") throw new Error(LF.t("error.answer_not_object"));
    if (!Array.isArray(data.probabilities)) throw problem("probabilities");
    if (!Array.isArray(data.input) || !Array.isArray(data.input[0])) throw problem("input");
    const a = data.attention;
    if (!a || !Array.isArray(a.cls) || !Number.isInteger(a.layers) || !Number.isInteger(a.heads)) {
      throw problem("attention");
    }
  }

  // ---------------------------------------------------------------- showing the answer

  /** Build the ten probability rows (label, bar, percentage) for the given class labels. */
  function buildBars(labels) {
    barsEl.replaceChildren();
    labels.forEach((label) => {
      const row = LF.el("div", { className: "bar", dataset: { class: String(label) } }, [
        LF.el("span", { className: "label", text: label }),
        LF.el("span", { className: "track" }, [LF.el("span", { className: "fill" })]),
        LF.el("span", { className: "pct", text: "" }),
      ]);
      barsEl.append(row);
    });
  }

  /** Fill the bars with probabilities and highlight the most likely class. */
  function showBars(probabilities) {
    const labels = classes.length === probabilities.length ? classes : probabilities.map((_, i) => String(i));
    if (barsEl.children.length !== probabilities.length) buildBars(labels);
    let top = 0;
    probabilities.forEach((p, i) => {
      if (p > probabilities[top]) top = i;
    });
    Array.from(barsEl.children).forEach((row, i) => {
      const p = LF.clamp(Number(probabilities[i]) || 0, 0, 1);
      row.querySelector(".fill").style.width = `${(p * 100).toFixed(1)}%`;
      row.querySelector(".pct").textContent = LF.percent(p);
      row.classList.toggle("top", i === top);
      row.setAttribute("aria-label", LF.t("digits.bar_label", { digit: labels[i], probability: LF.percent(p) }));
    });
  }

  /**
   * Paint the model's input on a new canvas of its own size: a nested list of 0–255 grey levels (rows ×
   * columns), or of [red, green, blue] triples for a photo model.
   */
  function makeInputImage(input) {
    const rows = input.length;
    const cols = input[0].length;
    const canvas = document.createElement("canvas");
    canvas.width = cols;
    canvas.height = rows;
    const ctx = canvas.getContext("2d");
    const image = ctx.createImageData(cols, rows);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const pixel = input[r][c];
        const level = (value) => LF.clamp(Math.round(Number(value) || 0), 0, 255);
        const rgb = Array.isArray(pixel) ? pixel.map(level) : [level(pixel), level(pixel), level(pixel)];
        const k = (r * cols + c) * 4;
        image.data[k] = rgb[0];
        image.data[k + 1] = rgb[1];
        image.data[k + 2] = rgb[2];
        image.data[k + 3] = 255;
      }
    }
    ctx.putImageData(image, 0, 0);
    return canvas;
  }

  /** Show the model's input on #input28 (scaled up by CSS, pixelated). */
  function showInput() {
    const ctx = input28.getContext("2d");
    if (!inputImage) {
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, input28.width, input28.height);
      return;
    }
    if (input28.width !== inputImage.width) input28.width = inputImage.width;
    if (input28.height !== inputImage.height) input28.height = inputImage.height;
    ctx.drawImage(inputImage, 0, 0);
  }

  /**
   * Paint the input in grey on `canvas`, then the attention `weights` (G·G values, row-major over
   * the G×G patches) as a heat map, normalised by its own maximum. `gridLines` outlines patches.
   */
  function drawOverlay(canvas, weights, grid, gridLines = false) {
    const ctx = canvas.getContext("2d");
    const W = canvas.width;
    const H = canvas.height;
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, W, H);
    if (!inputImage) return;
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(inputImage, 0, 0, W, H);
    if (!Array.isArray(weights) || !grid || weights.length !== grid * grid) return;
    const max = LF.maxOf(weights);
    for (let r = 0; r < grid; r++) {
      const y0 = Math.round((r * H) / grid);
      const y1 = Math.round(((r + 1) * H) / grid);
      for (let c = 0; c < grid; c++) {
        const x0 = Math.round((c * W) / grid);
        const x1 = Math.round(((c + 1) * W) / grid);
        const v = max > 0 ? Number(weights[r * grid + c]) / max : 0;
        ctx.fillStyle = LF.colormapCSS(CMAP, v, 0.35 + 0.45 * v);
        ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
      }
    }
    if (gridLines) {
      ctx.strokeStyle = "rgba(255, 255, 255, 0.18)";
      ctx.lineWidth = 1;
      ctx.beginPath();
      for (let i = 1; i < grid; i++) {
        const x = Math.round((i * W) / grid) + 0.5;
        const y = Math.round((i * H) / grid) + 0.5;
        ctx.moveTo(x, 0);
        ctx.lineTo(x, H);
        ctx.moveTo(0, y);
        ctx.lineTo(W, y);
      }
      ctx.stroke();
    }
  }

  /** (Re)build the L×H grid of head canvases with row and column labels. */
  function buildHeads(layers, heads) {
    gridShape = { layers, heads };
    headsEl.replaceChildren();
    headsEl.style.gridTemplateColumns = `auto repeat(${heads}, ${HEAD_CSS}px)`;
    headsEl.append(LF.el("span"));
    for (let h = 0; h < heads; h++) headsEl.append(LF.el("span", { className: "col-label", text: LF.t("common.head_n", { head: h + 1 }) }));
    for (let l = 0; l < layers; l++) {
      headsEl.append(LF.el("span", { className: "row-label", text: LF.t("common.layer_n", { layer: l + 1 }) }));
      for (let h = 0; h < heads; h++) {
        const canvas = LF.el("canvas", {
          className: "head",
          tabindex: "0",
          role: "img",
          "aria-label": LF.t("digits.head_label", { layer: l + 1, head: h + 1 }),
          title: LF.t("common.layer_head", { layer: l + 1, head: h + 1 }),
          dataset: { layer: String(l), head: String(h) },
        });
        LF.fitCanvas(canvas, HEAD_CSS, HEAD_CSS);
        drawOverlay(canvas, null, 0);
        headsEl.append(canvas);
      }
    }
    if (zoomTarget.kind === "head" && (zoomTarget.layer >= layers || zoomTarget.head >= heads)) {
      zoomTarget = { kind: "head", layer: 0, head: 0 };
    }
  }

  /** The class token's attention of one head (G·G numbers), or null when absent. */
  function headWeights(layer, head) {
    const cls = result && result.attention.cls;
    return cls && cls[layer] && Array.isArray(cls[layer][head]) ? cls[layer][head] : null;
  }

  /** Side of the patch grid of an answer: its own "grid", else the one /api/health gave (0: none). */
  function gridOf(answer) {
    if (!answer) return 0;
    const g = Number(answer.attention.grid);
    return Number.isInteger(g) && g > 0 ? g : healthGrid;
  }

  /** Draw every head of the grid and the rollout from the current answer (black when none). */
  function showAttention() {
    const grid = gridOf(result);
    for (const canvas of headsEl.querySelectorAll("canvas.head")) {
      const w = headWeights(Number(canvas.dataset.layer), Number(canvas.dataset.head));
      drawOverlay(canvas, w, grid);
    }
    LF.fitCanvas(rolloutCanvas, ROLLOUT_CSS, ROLLOUT_CSS);
    drawOverlay(rolloutCanvas, result ? result.attention.rollout : null, grid);
    showZoom();
  }

  /** Show `zoomTarget` enlarged in the #zoom panel, with its label and a short reading of it. */
  function showZoom() {
    LF.fitCanvas(zoomCanvas, ZOOM_CSS, ZOOM_CSS);
    const grid = gridOf(result);
    let weights;
    if (zoomTarget.kind === "rollout") {
      weights = result ? result.attention.rollout : null;
      zoomLabel.textContent = LF.t("digits.rollout");
    } else {
      weights = headWeights(zoomTarget.layer, zoomTarget.head);
      zoomLabel.textContent = LF.t("digits.zoom_head", { layer: zoomTarget.layer + 1, head: zoomTarget.head + 1 });
    }
    drawOverlay(zoomCanvas, weights, grid, true);
    zoomDetail.textContent = describeWeights(weights, grid);
    for (const c of headsEl.querySelectorAll("canvas.head.active")) c.classList.remove("active");
    if (zoomTarget.kind === "head") {
      const selector = `canvas.head[data-layer="${zoomTarget.layer}"][data-head="${zoomTarget.head}"]`;
      const active = headsEl.querySelector(selector);
      if (active) active.classList.add("active");
    }
    rolloutCanvas.classList.toggle("active", zoomTarget.kind === "rollout");
    if (result) saveState();
  }

  // ---------------------------------------------------------------- saving and sharing

  /** The link of this view: the image sent (base64url PNG) and the enlarged map. */
  function saveState() {
    if (!result || !sentDigit) return;
    const zoom = zoomTarget.kind === "rollout" ? { view: "rollout" } : { layer: zoomTarget.layer + 1, head: zoomTarget.head + 1 };
    LF.writeState({ digit: sentDigit, ...zoom });
  }

  /** Open the view of a link (`#digit=…&layer=2&head=3`): paint its image, predict it, enlarge its map. */
  async function restoreState() {
    const state = LF.readState();
    if (!state.has("digit")) return;
    if (state.get("view") === "rollout") zoomTarget = { kind: "rollout" };
    else {
      const layer = LF.intParam(state, "layer", 1, gridShape.layers || 64);
      const head = LF.intParam(state, "head", 1, gridShape.heads || 64);
      if (layer !== null && head !== null) zoomTarget = { kind: "head", layer: layer - 1, head: head - 1 };
    }
    try {
      const blob = new Blob([LF.fromBase64Url(state.get("digit"))], { type: "image/png" });
      preview = await loadImage(blob);
      previewFile = blob;
    } catch (_) {
      preview = null;
      previewFile = null;
      LF.setStatus(LF.t("digits.bad_link"), "error");
      return;
    }
    strokes = [];
    redrawPad();
    changed(true);
  }

  /** The grid of every head, with its labels, as one picture. */
  function headsPicture() {
    const rows = [];
    for (let l = 0; l < gridShape.layers; l++) {
      rows.push(Array.from({ length: gridShape.heads }, (_, h) => headsEl.querySelector(`canvas.head[data-layer="${l}"][data-head="${h}"]`)));
    }
    const rowLabels = rows.map((_, l) => LF.t("common.layer_n", { layer: l + 1 }));
    const colLabels = Array.from({ length: gridShape.heads }, (_, h) => LF.t("common.head_n", { head: h + 1 }));
    return LF.composeGrid(rows, rowLabels, colLabels);
  }

  /** Save one of the page's views as PNG ("heads", "zoom" or "rollout"). */
  function saveView(which) {
    if (!result) return;
    const name = `digit-${result.prediction}`;
    if (which === "heads") LF.savePNG(headsPicture(), `${name}-heads.png`);
    else if (which === "rollout") LF.savePNG(LF.withCaption(rolloutCanvas, LF.t("digits.rollout")), `${name}-rollout.png`);
    else {
      const what = zoomTarget.kind === "rollout" ? "rollout" : `layer${zoomTarget.layer + 1}-head${zoomTarget.head + 1}`;
      LF.savePNG(LF.withCaption(zoomCanvas, zoomLabel.textContent), `${name}-${what}.png`);
    }
  }

  /** One sentence about a map: where its peak is and how much of the attention falls on patches. */
  function describeWeights(weights, grid) {
    if (!Array.isArray(weights) || !grid || weights.length !== grid * grid) return "";
    let top = 0;
    let sum = 0;
    weights.forEach((w, i) => {
      sum += Number(w) || 0;
      if (w > weights[top]) top = i;
    });
    const row = Math.floor(top / grid) + 1;
    const col = (top % grid) + 1;
    const peak = LF.t("digits.peak", { row, column: col, weight: LF.percent(weights[top]) });
    if (zoomTarget.kind === "rollout") return peak;
    const rest = Math.max(0, 1 - sum);
    return `${peak} ${LF.t("digits.share", { patches: LF.percent(sum, 0), rest: LF.percent(rest, 0) })}`;
  }

  /** Point the zoom panel at the head canvas or rollout canvas under an event, if any. */
  function zoomFromEvent(event) {
    const target = event.target;
    if (!(target instanceof Element)) return;
    const head = target.closest("canvas.head");
    if (head) {
      const layer = Number(head.dataset.layer);
      const h = Number(head.dataset.head);
      if (zoomTarget.kind === "head" && zoomTarget.layer === layer && zoomTarget.head === h) return;
      zoomTarget = { kind: "head", layer, head: h };
      showZoom();
    } else if (target === rolloutCanvas && zoomTarget.kind !== "rollout") {
      zoomTarget = { kind: "rollout" };
      showZoom();
    }
  }

  /** Show a whole answer. */
  function render(data) {
    result = data;
    inputImage = makeInputImage(data.input);
    predictionEl.textContent = String(data.prediction);
    predictionEl.classList.remove("empty");
    showBars(data.probabilities);
    showInput();
    const a = data.attention;
    if (a.layers !== gridShape.layers || a.heads !== gridShape.heads) buildHeads(a.layers, a.heads);
    showAttention();
    for (const button of saveButtons) button.disabled = false;
  }

  /** Forget the answer: empty prediction, zero bars, black input and attention maps. */
  function clearResults() {
    result = null;
    inputImage = null;
    predictionEl.textContent = "–";
    predictionEl.classList.add("empty");
    for (const row of barsEl.children) {
      row.querySelector(".fill").style.width = "0%";
      row.querySelector(".pct").textContent = "";
      row.classList.remove("top");
    }
    showInput();
    showAttention();
    for (const button of saveButtons) button.disabled = true;
    if (enabled) LF.setStatus(LF.t("digits.ready"), "info");
  }

  // ---------------------------------------------------------------- start-up

  /** Enable or disable every control of the page. */
  function setEnabled(on) {
    enabled = on;
    fileInput.disabled = !on;
    pad.classList.toggle("disabled", !on);
    updateButtons();
  }

  /** Wire up all event listeners (pointer, buttons, file input, drag and drop, keyboard, zoom). */
  function bindEvents() {
    pad.addEventListener("pointerdown", onPointerDown);
    pad.addEventListener("pointermove", onPointerMove);
    pad.addEventListener("pointerup", onPointerEnd);
    pad.addEventListener("pointercancel", onPointerEnd);
    pad.addEventListener("lostpointercapture", onPointerEnd);
    pad.addEventListener("contextmenu", (event) => event.preventDefault());
    undoButton.addEventListener("click", undo);
    clearButton.addEventListener("click", clearPad);
    fileInput.addEventListener("change", () => {
      const file = fileInput.files && fileInput.files[0];
      fileInput.value = ""; // choosing the same file again fires "change" again
      useFile(file);
    });
    makeDropTarget(pad);
    makeDropTarget(dropLabel);
    // A file dropped beside the targets must not make the browser navigate away from the page.
    window.addEventListener("dragover", (event) => event.preventDefault());
    window.addEventListener("drop", (event) => event.preventDefault());
    document.addEventListener("keydown", (event) => {
      const tag = event.target instanceof Element ? event.target.tagName : "";
      if (tag === "INPUT" || tag === "TEXTAREA") return;
      if ((event.ctrlKey || event.metaKey) && !event.shiftKey && event.key.toLowerCase() === "z") {
        event.preventDefault();
        undo();
      }
    });
    for (const button of saveButtons) button.addEventListener("click", () => saveView(button.dataset.save));
    copyButton.addEventListener("click", () => LF.copyLink(copyButton));
    for (const type of ["pointerover", "focusin", "click"]) {
      headsEl.addEventListener(type, zoomFromEvent);
      rolloutCanvas.addEventListener(type, zoomFromEvent);
    }
  }

  /** Load the model status, build the empty page, and enable drawing when a digit model is served. */
  async function init() {
    bindEvents();
    setEnabled(false);
    redrawPad();
    for (const legend of document.querySelectorAll("canvas.legend")) LF.drawLegend(legend, CMAP);
    showInput();
    LF.fitCanvas(rolloutCanvas, ROLLOUT_CSS, ROLLOUT_CSS);
    drawOverlay(rolloutCanvas, null, 0);
    LF.fitCanvas(zoomCanvas, ZOOM_CSS, ZOOM_CSS);
    drawOverlay(zoomCanvas, null, 0);
    const digits = await LF.servedModel("digits");
    if (!digits) return;
    classes = Array.isArray(digits.classes) ? digits.classes.map(String) : [];
    healthGrid = Number.isInteger(digits.grid) ? digits.grid : 0;
    buildBars(classes.length ? classes : Array.from({ length: 10 }, (_, i) => String(i)));
    if (Number.isInteger(digits.layers) && Number.isInteger(digits.heads)) {
      buildHeads(digits.layers, digits.heads);
    }
    modelInfo.textContent = LF.t("model.info", { name: LF.modelName(digits), summary: LF.modelSummary(digits) });
    setEnabled(true);
    LF.setStatus(LF.t("digits.ready"), "info");
    await restoreState();
  }

  init();
})();

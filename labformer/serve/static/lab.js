/*
 * labformer serve — the lab page: show the report built by `labformer lab all` in an iframe, or the
 * server's message saying how to build it.
 */
"use strict";

(function () {
  const slot = document.getElementById("report-slot");
  const missing = document.getElementById("lab-missing");
  const messageEl = document.getElementById("lab-message");
  const buildButton = document.getElementById("build");

  /** Show the report at `src` in <iframe id="report"> filling the page. */
  function showReport(src) {
    const frame = LF.el("iframe", { id: "report", src, title: "The lab's report" });
    slot.replaceChildren(frame);
    missing.hidden = true;
  }

  /** Show why there is no report (the server's message, as text) in the page and the status line. */
  function showMissing(message) {
    const text = message || "No report has been built yet. Build it with `labformer lab all`, then reload this page.";
    messageEl.textContent = text;
    missing.hidden = false;
    slot.replaceChildren();
    LF.setStatus(text, "info");
  }

  /** Show the server's answer about the report: the report itself, or why there is none. */
  function show(data) {
    if (data && data.available && typeof data.report === "string" && data.report) {
      showReport(data.report);
      LF.setStatus(data.message || "The report built by `labformer lab all`.", "ok");
    } else {
      showMissing(data && typeof data.message === "string" ? data.message : "");
    }
    // Only a server started with --allow-build lets a visitor run the experiments.
    buildButton.hidden = !(data && data.can_build === true);
  }

  /** Ask the server whether a report exists, then show it or the message. */
  async function init() {
    LF.setStatus("Looking for the report…", "busy");
    try {
      show(await LF.fetchJSON("/api/lab"));
    } catch (err) {
      LF.showError(err, "Could not ask the server for the lab report");
    }
  }

  /** Ask the server to run every experiment of the lab (`labformer lab all`) and show the report. */
  async function build() {
    buildButton.disabled = true;
    LF.setStatus("Running every experiment of the lab…", "busy");
    try {
      show(await LF.postJSON("/api/lab/build", {}));
    } catch (err) {
      LF.showError(err, "Could not build the lab report");
    } finally {
      buildButton.disabled = false;
    }
  }

  buildButton.addEventListener("click", build);
  init();
})();

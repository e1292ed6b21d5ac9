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
    const frame = LF.el("iframe", { id: "report", src, title: LF.t("lab.heading") });
    slot.replaceChildren(frame);
    missing.hidden = true;
  }

  /** Show why there is no report (as text) in the page and the status line. */
  function showMissing(text) {
    messageEl.textContent = text;
    missing.hidden = false;
    slot.replaceChildren();
    LF.setStatus(text, "info");
  }

  /** Show the server's answer about the report: the report itself, or why there is none and how to build it. */
  function show(data) {
    const folder = data && typeof data.folder === "string" ? data.folder : "lab-report";
    // Only a server started with --allow-build lets a visitor run the experiments.
    const canBuild = Boolean(data && data.can_build === true);
    if (data && data.available && typeof data.report === "string" && data.report) {
      showReport(data.report);
      LF.setStatus(LF.t("lab.report_in", { folder }), "ok");
    } else {
      const missing = LF.t("lab.missing", { folder });
      showMissing(canBuild ? missing : `${missing} ${LF.t("lab.no_build")}`);
    }
    buildButton.hidden = !canBuild;
  }

  /** Ask the server whether a report exists, then show it or the message. */
  async function init() {
    LF.setStatus(LF.t("lab.looking"), "busy");
    try {
      show(await LF.fetchJSON("/api/lab"));
    } catch (err) {
      LF.showError(err, LF.t("lab.ask_failed"));
    }
  }

  /** Ask the server to run every experiment of the lab (`labformer lab all`) and show the report. */
  async function build() {
    buildButton.disabled = true;
    LF.setStatus(LF.t("lab.building"), "busy");
    try {
      show(await LF.postJSON("/api/lab/build", {}));
    } catch (err) {
      LF.showError(err, LF.t("lab.build_failed"));
    } finally {
      buildButton.disabled = false;
    }
  }

  buildButton.addEventListener("click", build);
  init();
})();

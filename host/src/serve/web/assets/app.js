// weir's dashboard: pages are rendered by the server; this script keeps
// them live. A page marked data-live="all" listens to /live and fetches
// itself again when anything changed; a page marked data-live-run="ID"
// follows that run's event stream: its log lines go to the log view, its
// other events refresh the page's [data-live-part] elements.
"use strict";
(() => {
  // ---- Refreshing the live parts of a page ----
  let timer = null;
  let busy = false;

  function editing(part) {
    if (part.contains(document.activeElement) && document.activeElement.matches("input, select, textarea")) return true;
    return [...part.querySelectorAll("input:not([type=hidden]), textarea")].some((i) => i.value !== "");
  }

  function refresh() {
    if (timer) return;
    timer = setTimeout(async () => {
      timer = null;
      if (busy) return refresh();
      busy = true;
      try {
        const r = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
        if (!r.ok) return;
        const doc = new DOMParser().parseFromString(await r.text(), "text/html");
        for (const part of document.querySelectorAll("[data-live-part]")) {
          const fresh = doc.getElementById(part.id);
          if (!fresh || fresh.innerHTML === part.innerHTML || editing(part)) continue;
          const focused = document.activeElement && part.contains(document.activeElement) ? document.activeElement.getAttribute("data-stage") : null;
          part.innerHTML = fresh.innerHTML;
          if (focused) {
            const again = part.querySelector(`[data-stage="${CSS.escape(focused)}"]`);
            if (again) again.focus();
          }
        }
      } catch (e) {
        // The next change tries again.
      } finally {
        busy = false;
      }
    }, 300);
  }

  // ---- ANSI colours (SGR) to HTML, escaping everything else ----
  // The host writes a plugin's control characters out as text (`\x1b`),
  // so a plugin cannot move a terminal's cursor; colours (SGR) in either
  // form are drawn as colours, anything else is dropped.
  const ESC = /(?:\x1b|\\x1b)\[([0-9;]*)([A-Za-z])/g;
  function escapeHtml(s) {
    return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }
  function ansi(text) {
    if (text.indexOf("\x1b") < 0 && text.indexOf("\\x1b") < 0) return escapeHtml(text);
    let out = "";
    let classes = [];
    let last = 0;
    const open = () => (classes.length ? `<span class="${classes.join(" ")}">` : "");
    const close = () => (classes.length ? "</span>" : "");
    text.replace(ESC, (m, params, cmd, at) => {
      out += open() + escapeHtml(text.slice(last, at)) + close();
      last = at + m.length;
      if (cmd !== "m") return m;
      for (const p of (params || "0").split(";").map(Number)) {
        if (p === 0) classes = [];
        else if (p === 1) classes.push("a-b");
        else if (p === 2) classes.push("a-d");
        else if (p === 3) classes.push("a-i");
        else if (p === 4) classes.push("a-u");
        else if (p === 22) classes = classes.filter((c) => c !== "a-b" && c !== "a-d");
        else if (p === 39) classes = classes.filter((c) => !/^a-\d+$/.test(c));
        else if ((p >= 30 && p <= 37) || (p >= 90 && p <= 97)) {
          classes = classes.filter((c) => !/^a-\d+$/.test(c));
          classes.push(`a-${p}`);
        }
      }
      return m;
    });
    out += open() + escapeHtml(text.slice(last)) + close();
    return out;
  }

  // ---- The log view: every line kept, only those in view drawn ----
  function LogView(root) {
    const space = root.querySelector(".log-space");
    const pre = root.querySelector(".log-lines");
    const stageSel = document.getElementById("log-stage");
    const find = document.getElementById("log-find");
    const count = document.getElementById("log-count");
    const lines = []; // [stage, level, text]
    let shown = []; // indices into lines
    let stage = "";
    let needle = "";
    let follow = true;
    let queued = false;
    let lineHeight = 18;
    const OVERSCAN = 40;
    // Past this the tab's memory, not the drawing, would be the limit.
    const MAX_LINES = 1000000;
    let truncated = false;

    function matches(i) {
      const l = lines[i];
      return (!stage || l[0] === stage) && (!needle || l[2].toLowerCase().includes(needle));
    }
    function draw() {
      queued = false;
      space.style.height = `${shown.length * lineHeight}px`;
      if (follow) root.scrollTop = root.scrollHeight;
      const first = Math.max(0, Math.floor(root.scrollTop / lineHeight) - OVERSCAN);
      const last = Math.min(shown.length, first + Math.ceil(root.clientHeight / lineHeight) + 2 * OVERSCAN);
      let html = "";
      for (let k = first; k < last; k++) {
        const [s, level, text] = lines[shown[k]];
        const cls = level === "warn" || level === "error" ? ` class="l-${level}"` : "";
        const tag = stage ? "" : `<span class="stage">${escapeHtml(String(s ?? ""))} │ </span>`;
        html += `<span${cls} data-line="${shown[k]}">${tag}${ansi(text)}</span>\n`;
      }
      pre.style.transform = `translateY(${first * lineHeight}px)`;
      pre.innerHTML = html;
      count.textContent = `${shown.length.toLocaleString()} of ${lines.length.toLocaleString()} lines`;
      if (!window.weirFirstLog && lines.length) {
        window.weirFirstLog = performance.now();
      }
    }
    function schedule() {
      if (!queued) {
        queued = true;
        requestAnimationFrame(draw);
      }
    }
    function refilter() {
      shown = [];
      for (let i = 0; i < lines.length; i++) if (matches(i)) shown.push(i);
      follow = true;
      schedule();
    }
    root.addEventListener("scroll", () => {
      follow = root.scrollTop + root.clientHeight >= root.scrollHeight - lineHeight;
      schedule();
    }, { passive: true });
    stageSel.addEventListener("change", () => {
      stage = stageSel.value;
      refilter();
    });
    find.addEventListener("input", () => {
      needle = find.value.toLowerCase();
      refilter();
    });
    const probe = getComputedStyle(pre).lineHeight;
    if (probe.endsWith("px")) lineHeight = parseFloat(probe);
    return {
      add(s, level, text) {
        if (lines.length >= MAX_LINES) {
          if (!truncated) {
            truncated = true;
            lines.push(["", "warn", `… the page keeps ${MAX_LINES.toLocaleString()} lines; the raw log has the rest`]);
            if (matches(lines.length - 1)) shown.push(lines.length - 1);
            schedule();
          }
          return;
        }
        for (const part of String(text ?? "").split("\n")) {
          lines.push([s, level, part]);
          if (matches(lines.length - 1)) shown.push(lines.length - 1);
        }
        // The first lines are drawn at once: a flood of events could
        // otherwise hold the first frame back.
        if (!window.weirFirstLog) draw();
        else schedule();
      },
      show(s) {
        stageSel.value = s;
        stage = s;
        refilter();
      },
      draw: schedule,
    };
  }

  function followRun(el) {
    const id = el.getAttribute("data-live-run");
    const viewEl = document.getElementById("log-view");
    const view = viewEl ? LogView(viewEl) : null;
    let done = el.getAttribute("data-live-done") === "true";
    if (!view && done) return;
    const es = new EventSource(`/api/v1/runs/${encodeURIComponent(id)}/events`);
    es.onerror = () => {
      // A run that ended without a last event: stop asking again.
      if (done) es.close();
    };
    const kinds = ["run_started", "stage_skipped", "stage_cache", "stage_started", "stage_progress", "stage_retrying",
      "stage_finished", "rollout", "stage_waiting", "approval_decided", "run_waiting", "run_finished"];
    for (const k of kinds) {
      es.addEventListener(k, () => {
        if (!done) refresh();
        if (k === "run_finished") {
          done = true;
          es.close();
          refresh();
        }
      });
    }
    if (view) {
      es.addEventListener("stage_log", (e) => {
        try {
          const d = JSON.parse(e.data);
          view.add(d.stage, d.level, d.message);
        } catch (err) {
          // A malformed line is skipped, not fatal.
        }
      });
      // A stage node selects its log.
      document.addEventListener("click", (e) => {
        const node = e.target.closest && e.target.closest("[data-stage]");
        if (!node) return;
        e.preventDefault();
        view.show(node.getAttribute("data-stage"));
        viewEl.focus({ preventScroll: true });
        viewEl.scrollIntoView({ block: "nearest" });
      });
    }
  }

  function followAll() {
    const es = new EventSource("/live");
    es.addEventListener("change", refresh);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const run = document.querySelector("[data-live-run]");
    if (run) followRun(run);
    if (document.querySelector("[data-live='all']")) followAll();
  });
})();

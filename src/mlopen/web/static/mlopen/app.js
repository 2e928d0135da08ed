/* mlopen pages: everything the templates need from JavaScript, wired through data attributes.
 * The Content-Security-Policy allows no inline script, so nothing here is called from markup. */
(function () {
  "use strict";

  var PLOT_CONFIG = { responsive: true, displaylogo: false };

  /* Plotly figures: <div data-figure="ID"> next to <script type="application/json" id="ID">. */
  function drawFigures(root) {
    if (!window.Plotly) { return; }
    root.querySelectorAll("[data-figure]:not([data-drawn])").forEach(function (el) {
      el.setAttribute("data-drawn", "");
      var source = document.getElementById(el.getAttribute("data-figure"));
      if (!source) { return; }
      var figure;
      try {
        figure = JSON.parse(source.textContent);
      } catch (err) {
        el.textContent = "This graph could not be read.";
        return;
      }
      var layout = Object.assign({ autosize: true }, figure.layout || {});
      var config = Object.assign({}, PLOT_CONFIG, figure.config || {});
      el.mlopenLayout = JSON.parse(JSON.stringify(figure.layout || {}));
      window.Plotly.newPlot(el, figure.data || [], layout, config).then(function () { themeFigure(el); });
    });
  }

  /* Figures in the page's colour theme: on a dark page, a transparent background, light text and
   * faint grid lines; on a light page, what the figure itself asked for (null: plotly's default). */
  function original(layout, path) {
    return path.split(".").reduce(function (part, key) {
      return part && part[key] !== undefined ? part[key] : null;
    }, layout);
  }

  function themeFigure(el) {
    if (!window.Plotly || !el.layout) { return; }
    var dark = document.documentElement.getAttribute("data-bs-theme") === "dark";
    var wanted = {
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", "font.color": "#dee2e6",
      "legend.font.color": "#dee2e6", "title.font.color": "#f8f9fa",
    };
    Object.keys(el.layout).forEach(function (key) {
      if (/^[xy]axis\d*$/.test(key)) {
        wanted[key + ".gridcolor"] = "rgba(255,255,255,0.12)";
        wanted[key + ".zerolinecolor"] = "rgba(255,255,255,0.3)";
        wanted[key + ".linecolor"] = "rgba(255,255,255,0.3)";
      }
    });
    var update = {};
    Object.keys(wanted).forEach(function (path) {
      update[path] = dark ? wanted[path] : original(el.mlopenLayout || {}, path);
    });
    window.Plotly.relayout(el, update);
  }

  document.addEventListener("mlopen:theme", function () {
    document.querySelectorAll("[data-figure][data-drawn]").forEach(themeFigure);
  });

  /* Logs: keep the newest line in view unless the reader scrolled up to read. */
  var logFollow = {};

  function scrollLogs(root) {
    root.querySelectorAll("pre[data-autoscroll]").forEach(function (pre) {
      var key = pre.id || "";
      if (logFollow[key] === undefined || logFollow[key] === true) {
        pre.scrollTop = pre.scrollHeight;
      } else {
        pre.scrollTop = logFollow[key];
      }
    });
  }

  function rememberLogPositions(root) {
    root.querySelectorAll("pre[data-autoscroll]").forEach(function (pre) {
      var atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 24;
      logFollow[pre.id || ""] = atBottom ? true : pre.scrollTop;
    });
  }

  /* Forms that take a while (uploads, starting a run): show that something is happening. */
  function markBusy(form) {
    var label = form.getAttribute("data-busy");
    form.querySelectorAll("button[type=submit]").forEach(function (button) {
      button.disabled = true;
      button.innerHTML = '<span class="spinner-border spinner-border-sm" aria-hidden="true"></span> ';
      button.appendChild(document.createTextNode(label));
    });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      return;
    }
    if (form.hasAttribute("data-busy")) {
      markBusy(form);
    }
  });

  /* The runs list: a header checkbox ticks (or clears) every run's checkbox of its form. */
  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!box.matches || !box.matches("input[data-select-all]")) { return; }
    var form = box.closest("form") || document;
    form.querySelectorAll('input[type=checkbox][name="' + box.getAttribute("data-select-all") + '"]').forEach(
      function (item) { item.checked = box.checked; }
    );
  });

  /* Folder pickers: hidden files and __pycache__ are left out before sending (the server would
   * skip them anyway), and a folder with more files than one upload takes is refused here, with
   * the way out, rather than by the server's generic "too many files" answer. */
  function isLeftOut(file) {
    return (file.webkitRelativePath || file.name).split("/").some(function (part) {
      return part.charAt(0) === "." || part === "__pycache__" || part === "__MACOSX";
    });
  }

  document.addEventListener("change", function (event) {
    var input = event.target;
    if (!input.matches || !input.matches("input[data-folder-picker]")) { return; }
    var note = input.parentNode.querySelector("[data-folder-note]");
    if (!note) {
      note = document.createElement("div");
      note.setAttribute("data-folder-note", "");
      note.className = "form-text";
      input.insertAdjacentElement("afterend", note);
    }
    var files = Array.prototype.filter.call(input.files, function (file) { return !isLeftOut(file); });
    if (window.DataTransfer && files.length !== input.files.length) {
      var kept = new DataTransfer();
      files.forEach(function (file) { kept.items.add(file); });
      input.files = kept.files;
    }
    var max = parseInt(input.getAttribute("data-max-files") || "0", 10);
    if (max && files.length > max) {
      input.value = "";
      note.className = "invalid-feedback d-block";
      note.textContent = "This folder has " + files.length + " files; one upload takes at most " + max +
        ". Send the folder as a zip instead.";
      return;
    }
    note.className = "form-text";
    note.textContent = files.length ? files.length + " files will be uploaded with their folders." : "";
  });

  /* The run form: Start waits for an input when the pipeline needs one (the server refuses a run
   * without it too); a dataset chosen or a file picked enables it. */
  function syncStart(form) {
    var button = form.querySelector("button[data-needs-input]");
    if (!button) { return; }
    var chosen = form.querySelector("select[name=input]");
    var upload = form.querySelector("input[name=input_upload]");
    var has = Boolean((chosen && chosen.value) || (upload && upload.files && upload.files.length));
    button.disabled = !has;
    var reason = form.querySelector("[data-input-reason]");
    if (reason) { reason.hidden = has; }
  }

  document.addEventListener("change", function (event) {
    var form = event.target.closest && event.target.closest("#run-form");
    if (form) { syncStart(form); }
  });

  /* HTML graphs live in sandboxed frames; they post their height so the frame fits them. */
  window.addEventListener("message", function (event) {
    var data = event.data;
    if (!data || typeof data.mlopenGraphHeight !== "number") { return; }
    document.querySelectorAll("iframe.graph-frame").forEach(function (frame) {
      if (frame.contentWindow === event.source) {
        frame.style.height = Math.max(200, Math.min(2000, Math.ceil(data.mlopenGraphHeight) + 4)) + "px";
      }
    });
  });

  document.addEventListener("htmx:beforeSwap", function (event) {
    rememberLogPositions(event.detail.target || document);
    rememberTicked(event.detail.target);
  });

  /* A live list redrawn while runs are ticked keeps them ticked: the ids are read before the swap
   * and ticked again after it (a run that left the page is simply not there any more). */
  var ticked = null;
  function rememberTicked(target) {
    ticked = null;
    if (!target || !target.querySelectorAll) { return; }
    var boxes = target.querySelectorAll('input[type=checkbox][name="ids"]:checked');
    if (boxes.length) { ticked = Array.prototype.map.call(boxes, function (box) { return box.value; }); }
  }
  document.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (!ticked || !target || !target.querySelectorAll) { return; }
    target.querySelectorAll('input[type=checkbox][name="ids"]').forEach(function (box) {
      if (ticked.indexOf(box.value) !== -1) { box.checked = true; }
    });
    ticked = null;
  });

  /* Live fragments (data-etag): each poll sends the ETag of what the page shows; the server answers
   * 304, and nothing is swapped (htmx-config's responseHandling), until something changed. */
  document.addEventListener("htmx:configRequest", function (event) {
    var elt = event.detail.elt;
    var etag = elt && elt.getAttribute && elt.getAttribute("data-etag");
    if (etag) { event.detail.headers["If-None-Match"] = etag; }
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    var xhr = event.detail.xhr;
    var elt = event.detail.elt;
    if (xhr && xhr.status === 200 && elt && elt.hasAttribute && elt.hasAttribute("data-etag")) {
      var etag = xhr.getResponseHeader("ETag");
      if (etag) { elt.setAttribute("data-etag", etag); }
    }
  });

  /* A run that ends while its page, the runs list, the home page or its pipeline's page is open:
   * the tab's title says so and, when its owner allowed it (the notifications page's button) and
   * chose it for this pipeline (data-notify: all, failures, off), the browser shows a notification. */
  var FINISHED = { succeeded: "\u2713", failed: "\u2717", cancelled: "\u25a0" };
  var seenStatus = {};
  var TITLE_KEY = "mlopen:title:";

  function wants(notify, status) {
    return notify === "all" || (notify === "failures" && status === "failed");
  }

  function announce(run) {
    if (!FINISHED[run.status] || !wants(run.notify, run.status)) { return; }
    var title = FINISHED[run.status] + " run #" + run.id + " " + run.status + " \u2014 mlopen";
    document.title = title;
    try { window.sessionStorage.setItem(TITLE_KEY + window.location.pathname, title); } catch (err) { /* private mode */ }
    if ("Notification" in window && window.Notification.permission === "granted") {
      var note = new window.Notification("Run #" + run.id + " " + run.status, {
        body: run.label || "", tag: "mlopen-run-" + run.id
      });
      note.onclick = function () {
        window.focus();
        if (run.url) { window.location.href = run.url; }
      };
    }
  }

  function scanRuns(root, tell) {
    if (!root.querySelectorAll) { return; }
    root.querySelectorAll("[data-run-id][data-run-status]").forEach(function (el) {
      var id = el.getAttribute("data-run-id");
      var status = el.getAttribute("data-run-status");
      var before = seenStatus[id];
      seenStatus[id] = status;
      if (tell && before && !FINISHED[before] && FINISHED[status]) {
        announce({
          id: id, status: status, notify: el.getAttribute("data-notify"),
          label: el.getAttribute("data-run-label"), url: el.getAttribute("data-run-url")
        });
      }
    });
  }

  document.addEventListener("htmx:afterSwap", function (event) { scanRuns(event.detail.target || document, true); });
  document.addEventListener("htmx:oobAfterSwap", function (event) { scanRuns(event.detail.target || document, true); });
  document.addEventListener("mlopen:run-finished", function (event) {
    var run = event.detail || {};
    run.url = window.location.pathname;
    announce(run);
  });

  function restoreTitle() {
    var key = TITLE_KEY + window.location.pathname;
    try {
      var title = window.sessionStorage.getItem(key);
      if (title) {
        document.title = title;  // set before the run page reloaded to show the result
        window.sessionStorage.removeItem(key);
      }
    } catch (err) { /* private mode */ }
  }

  /* The notifications page: what this browser allows, and the button that asks (never on load). */
  function showPermission(panel) {
    var text = panel.querySelector("[data-state-text]");
    var button = panel.querySelector("[data-ask-notifications]");
    if (!("Notification" in window)) {
      text.textContent = "This browser cannot show notifications; the tab's title still changes.";
      button.classList.add("d-none");
      return;
    }
    var state = window.Notification.permission;
    text.textContent = state === "granted" ? "This browser shows a notification when one of your runs ends."
      : state === "denied" ? "Notifications from mlopen are blocked in this browser; allow them in its site settings."
      : "This browser has not been allowed to show notifications yet.";
    button.classList.toggle("d-none", state !== "default");
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("[data-ask-notifications]");
    if (!button || !("Notification" in window)) { return; }
    var panel = button.closest("[data-notification-state]");
    window.Notification.requestPermission().then(function () { showPermission(panel); });
  });

  /* A result table wider than its box: shade the side with more columns (CSS .more-left/.more-right). */
  function shadeTableFrame(frame) {
    var box = frame.querySelector(".table-responsive");
    if (!box) { return; }
    var first = box.querySelector("tbody td:first-child, thead th:first-child");
    frame.style.setProperty("--first-column-width", first ? first.offsetWidth + "px" : "0px");
    frame.classList.toggle("overflows", box.scrollWidth > box.clientWidth + 1);
    frame.classList.toggle("more-left", box.scrollLeft > 1);
    frame.classList.toggle("more-right", box.scrollLeft + box.clientWidth < box.scrollWidth - 1);
  }
  function watchTableFrames(root) {
    root.querySelectorAll("[data-table-frame]:not([data-shaded])").forEach(function (frame) {
      frame.setAttribute("data-shaded", "");
      var box = frame.querySelector(".table-responsive");
      if (box) { box.addEventListener("scroll", function () { shadeTableFrame(frame); }, { passive: true }); }
      shadeTableFrame(frame);
    });
  }
  window.addEventListener("resize", function () {
    document.querySelectorAll("[data-table-frame]").forEach(shadeTableFrame);
  });

  /* htmx fires htmx:load for the page body once, then for every piece of content it swaps in. */
  function start(root) {
    drawFigures(root);
    if (root === document.body || root === document) {
      scanRuns(document, false);
      restoreTitle();
      document.querySelectorAll("[data-notification-state]").forEach(showPermission);
    }
    scrollLogs(root);
    watchTableFrames(root);
    var runForm = document.getElementById("run-form");
    if (runForm) { syncStart(runForm); }
  }
  if (window.htmx) {
    document.addEventListener("htmx:load", function (event) { start(event.detail.elt); });
  } else if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { start(document); });
  } else {
    start(document);
  }
})();

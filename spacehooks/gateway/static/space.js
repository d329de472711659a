// Space page: tabs, live logs (server-sent events) and the stage badge kept current.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("space-data").textContent);
  var LIVE = data.live, TONES = data.tones;  // from spacehooks/stages.py, through the page

  function showView(name) {
    document.querySelectorAll("[data-view]").forEach(function (b) {
      b.classList.toggle("active", b.dataset.view === name);
    });
    document.getElementById("view-app").style.display = name === "app" ? "" : "none";
    document.getElementById("view-logs").style.display = name === "logs" ? "flex" : "none";
    if (name === "logs") startLogs(document.querySelector("#view-logs [data-logs]"));
  }
  document.querySelectorAll("[data-view]").forEach(function (b) {
    b.addEventListener("click", function () { showView(b.dataset.view); });
  });
  var embedToggle = document.getElementById("embed-toggle");
  if (embedToggle) embedToggle.addEventListener("click", function () {
    document.getElementById("embed").classList.toggle("open");
  });

  // One EventSource per log panel, switched between build and container logs.
  function startLogs(panel) {
    if (!panel || panel.dataset.started) return;
    panel.dataset.started = "1";
    var pane = panel.querySelector(".logpane");
    var source = null;
    function open(kind) {
      if (source) source.close();
      pane.textContent = "";
      panel.querySelectorAll("[data-log]").forEach(function (b) { b.classList.toggle("active", b.dataset.log === kind); });
      source = new EventSource(data.api + "/logs/" + kind);
      source.onmessage = function (event) {
        var line;
        try { line = JSON.parse(event.data).data; } catch (e) { line = event.data; }
        var stick = pane.scrollTop + pane.clientHeight >= pane.scrollHeight - 4;
        pane.appendChild(document.createTextNode(line.replace(/\n?$/, "\n")));
        if (stick) pane.scrollTop = pane.scrollHeight;
      };
      source.onerror = function () {
        // run logs are for the Space's members: a visitor's stream is refused (404), not retried
        if (source.readyState === EventSource.CLOSED && kind === "run" && !pane.textContent) {
          pane.textContent = "Container logs are shown to the Space's members: sign in with a token (top right).\n";
        }
      };
      source.addEventListener("empty", function (event) {
        var note = document.createElement("span");
        note.className = "dim";
        note.textContent = event.data + "\n";
        pane.appendChild(note);
      });
    }
    panel.querySelectorAll("[data-log]").forEach(function (b) {
      b.addEventListener("click", function () { open(b.dataset.log); });
    });
    var active = panel.querySelector("[data-log].active");
    open(active ? active.dataset.log : "build");
  }
  document.querySelectorAll("#view-app [data-logs]").forEach(startLogs);

  // Keep the badge current; reload when the app appears or goes away.
  var badge = document.getElementById("stage");
  function poll() {
    fetch(data.api + "/runtime", { cache: "no-store" }).then(function (r) { return r.json(); }).then(function (rt) {
      if (rt.stage !== data.stage) {
        var wasLive = LIVE.indexOf(data.stage) >= 0, isLive = LIVE.indexOf(rt.stage) >= 0;
        if (wasLive !== isLive) { window.location.reload(); return; }
        data.stage = rt.stage;
        if (badge) {
          badge.textContent = rt.stageLabel;
          badge.title = rt.stage;
          badge.className = "badge " + (TONES[rt.stage] || "error");
        }
      }
    }).catch(function () {}).then(function () { setTimeout(poll, 3000); });
  }
  setTimeout(poll, 3000);
})();

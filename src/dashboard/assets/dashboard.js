// forebay's dashboard: small enhancements only. Every page works without this file,
// except the live tail. Stored text is only ever set with textContent, never parsed
// as HTML.
(function () {
  "use strict";

  // "Select all" boxes tick every box of their form.
  document.querySelectorAll("input.select-all").forEach(function (all) {
    all.addEventListener("change", function () {
      var scope = all.closest("form") || document;
      scope.querySelectorAll("input.pick").forEach(function (box) {
        box.checked = all.checked;
      });
    });
  });

  // The live tail: new events from the server-sent event stream, newest on top.
  var tail = document.getElementById("tail");
  if (!tail) {
    return;
  }
  var MAX_ROWS = 200;
  var body = tail.querySelector("tbody");
  var status = document.getElementById("tail-status");
  var pause = document.getElementById("tail-pause");
  var paused = false;
  pause.hidden = false;
  pause.addEventListener("click", function () {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
  });

  function cell(row, text) {
    var td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  var source = new EventSource(tail.dataset.stream);
  source.addEventListener("open", function () {
    status.textContent = "Following new events.";
  });
  source.addEventListener("error", function () {
    status.textContent = "Connection lost; reconnecting…";
  });
  source.addEventListener("event", function (message) {
    if (paused) {
      return;
    }
    var e = JSON.parse(message.data);
    var row = document.createElement("tr");
    row.className = "live-event";
    cell(row, (e.received_at || "").slice(0, 19).replace("T", " "));
    cell(row, e.source);
    var link = document.createElement("a");
    link.href = "/events/" + encodeURIComponent(e.id);
    link.className = "id";
    link.textContent = e.id;
    cell(row, "").appendChild(link);
    cell(row, e.method);
    var text = typeof e.body === "string" ? e.body : "(binary, " + e.body_size + " bytes)";
    cell(row, text.length > 160 ? text.slice(0, 160) + "…" : text).className = "preview";
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > MAX_ROWS) {
      body.deleteRow(body.rows.length - 1);
    }
  });
})();

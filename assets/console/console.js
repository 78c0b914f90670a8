// Offside console: makes review fast. Every page works without this file; with it:
// - queue: j/k move the selection, Enter opens, c confirm, d dismiss, r restore, x toggles the
//   row for the bulk form (the first row starts selected, so `c` alone confirms it);
// - case page: c/d/r press the decision buttons; the evidence pairs become a flip-book with a
//   scrubber and a play button (arrow keys step);
// - any element with data-poll="URL" is replaced by the element with the same id in URL's
//   answer every data-poll-ms (streams table, references while hashing; with data-poll-reload
//   the page reloads once the fresh copy stops polling);
// - the upload form shows its progress.
(function () {
  "use strict";

  function typing(event) {
    var t = event.target;
    if (!t || !t.tagName) return false;
    var tag = t.tagName.toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || t.isContentEditable;
  }

  function press(form, decision) {
    if (!form) return false;
    var button = form.querySelector('button[name="decision"][value="' + decision + '"]');
    if (!button) return false;
    if (form.requestSubmit) {
      form.requestSubmit(button);
    } else {
      button.click();
    }
    return true;
  }

  // ---- Review queue -------------------------------------------------------------------------
  function setupQueue() {
    var table = document.getElementById("queue");
    if (!table) return;
    var rows = Array.prototype.slice.call(table.querySelectorAll("tr.queue-row"));
    if (rows.length === 0) return;
    var current = 0;

    function select(i) {
      if (i < 0 || i >= rows.length) return;
      rows[current].classList.remove("selected");
      rows[current].removeAttribute("aria-selected");
      current = i;
      rows[current].classList.add("selected");
      rows[current].setAttribute("aria-selected", "true");
      rows[current].scrollIntoView({ block: "nearest" });
    }

    function toggle(row) {
      var box = row.querySelector("input.queue-select");
      if (!box) return;
      box.checked = !box.checked;
      row.classList.toggle("checked", box.checked);
    }

    select(0);
    rows.forEach(function (row, i) {
      var box = row.querySelector("input.queue-select");
      if (box) {
        box.addEventListener("change", function () {
          row.classList.toggle("checked", box.checked);
        });
      }
      row.addEventListener("click", function (event) {
        var tag = event.target.tagName.toLowerCase();
        if (tag === "a" || tag === "button" || tag === "input" || tag === "img") {
          select(i);
          return;
        }
        select(i);
        window.location.href = row.getAttribute("data-href");
      });
    });

    var bulk = document.getElementById("bulk-form");
    if (bulk) {
      bulk.addEventListener("submit", function (event) {
        var checked = document.querySelectorAll("input.queue-select:checked");
        // Nothing ticked: the selected row is the one meant (the form data is read after this).
        if (checked.length === 0) toggle(rows[current]);
      });
    }

    document.addEventListener("keydown", function (event) {
      if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
      var row = rows[current];
      var form = row.querySelector("form.row-decision");
      switch (event.key) {
        case "j":
        case "ArrowDown":
          select(current + 1);
          break;
        case "k":
        case "ArrowUp":
          select(current - 1);
          break;
        case "Enter":
        case "o":
          window.location.href = row.getAttribute("data-href");
          break;
        case "c":
          if (!press(form, "confirm")) return;
          break;
        case "d":
          if (!press(form, "dismiss")) return;
          break;
        case "r":
          if (!press(form, "restore")) return;
          break;
        case "x":
          toggle(row);
          break;
        default:
          return;
      }
      event.preventDefault();
    });
  }

  // ---- Case page: keys and flip-book ------------------------------------------------------
  function setupCase() {
    var form = document.getElementById("decision-form");
    if (form) {
      document.addEventListener("keydown", function (event) {
        if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
        var decision = { c: "confirm", d: "dismiss", r: "restore" }[event.key];
        if (decision && press(form, decision)) event.preventDefault();
      });
    }

    var list = document.getElementById("pairs");
    var controls = document.getElementById("flipbook-controls");
    var scrubber = document.getElementById("pair-scrubber");
    var play = document.getElementById("pair-play");
    var position = document.getElementById("pair-position");
    if (!list || !controls || !scrubber || !play) return;
    var pairs = Array.prototype.slice.call(list.querySelectorAll("li.pair"));
    if (pairs.length === 0) return;
    // Flip-book mode loads every still up front so flipping does not flicker.
    Array.prototype.forEach.call(list.querySelectorAll("img"), function (img) {
      img.loading = "eager";
    });
    list.classList.add("flipbook");
    controls.hidden = false;
    var shown = 0;
    var timer = null;

    function show(i) {
      i = Math.max(0, Math.min(pairs.length - 1, i));
      pairs[shown].classList.remove("current");
      shown = i;
      pairs[shown].classList.add("current");
      scrubber.value = String(i);
      if (position) position.textContent = i + 1 + " / " + pairs.length;
    }

    function stop() {
      if (timer !== null) {
        window.clearInterval(timer);
        timer = null;
      }
      play.textContent = "Play";
      play.setAttribute("aria-pressed", "false");
    }

    function start() {
      if (shown === pairs.length - 1) show(0);
      timer = window.setInterval(function () {
        if (shown >= pairs.length - 1) {
          stop();
        } else {
          show(shown + 1);
        }
      }, 500);
      play.textContent = "Pause";
      play.setAttribute("aria-pressed", "true");
    }

    show(0);
    scrubber.addEventListener("input", function () {
      stop();
      show(parseInt(scrubber.value, 10) || 0);
    });
    play.addEventListener("click", function () {
      if (timer === null) start();
      else stop();
    });
    document.addEventListener("keydown", function (event) {
      if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
      if (event.key === "ArrowRight") {
        stop();
        show(shown + 1);
      } else if (event.key === "ArrowLeft") {
        stop();
        show(shown - 1);
      } else if (event.key === " " && event.target === document.body) {
        if (timer === null) start();
        else stop();
      } else {
        return;
      }
      event.preventDefault();
    });
  }

  // ---- Polling ------------------------------------------------------------------------------
  function poll(id) {
    var el = document.getElementById(id);
    if (!el || !el.getAttribute("data-poll")) return;
    var url = el.getAttribute("data-poll");
    var every = parseInt(el.getAttribute("data-poll-ms"), 10) || 5000;
    window.setTimeout(function () {
      if (document.hidden) {
        poll(id);
        return;
      }
      fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (response) {
          // A redirect means the session ended: stop, the next navigation signs in again.
          if (!response.ok || response.redirected) throw new Error("poll stopped");
          return response.text();
        })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.getElementById(id);
          var old = document.getElementById(id);
          if (fresh && old) {
            // data-poll-reload: once the fresh copy stops polling (the job is done), the whole
            // page is stale (status, stills): load it again.
            if (old.hasAttribute("data-poll-reload") && !fresh.hasAttribute("data-poll")) {
              window.location.reload();
              return;
            }
            old.replaceWith(document.importNode(fresh, true));
          }
          poll(id);
        })
        .catch(function () {});
    }, every);
  }

  function setupPolling() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-poll]"), function (el) {
      if (el.id) poll(el.id);
    });
  }

  // ---- Upload progress ----------------------------------------------------------------------
  function setupUpload() {
    var form = document.getElementById("upload-form");
    if (!form || !window.XMLHttpRequest || !window.FormData) return;
    var bar = document.getElementById("upload-progress");
    var status = document.getElementById("upload-status");
    var submit = document.getElementById("upload-submit");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var xhr = new XMLHttpRequest();
      // getAttribute: the form's own `action` field (the policy action) shadows form.action.
      xhr.open("POST", form.getAttribute("action"));
      if (bar) {
        bar.hidden = false;
        bar.value = 0;
      }
      if (submit) submit.disabled = true;
      xhr.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable && bar) {
          bar.value = e.loaded / e.total;
          if (status) status.textContent = Math.round((100 * e.loaded) / e.total) + "% sent";
        }
      });
      xhr.addEventListener("load", function () {
        if (xhr.status >= 200 && xhr.status < 300 && xhr.responseURL) {
          // The server answered 303 to the new reference's page; the browser followed it.
          window.location.href = xhr.responseURL;
          return;
        }
        if (submit) submit.disabled = false;
        var message = "Upload refused (" + xhr.status + ")";
        try {
          var doc = new DOMParser().parseFromString(xhr.responseText, "text/html");
          var m = doc.getElementById("error-message");
          if (m) message += ": " + m.textContent;
        } catch (e) {}
        if (status) status.textContent = message;
      });
      xhr.addEventListener("error", function () {
        if (submit) submit.disabled = false;
        if (status) status.textContent = "Upload failed: the connection dropped.";
      });
      xhr.send(new FormData(form));
    });
  }

  function init() {
    setupQueue();
    setupCase();
    setupPolling();
    setupUpload();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();

// robustxai studio: overlay opacity, image-alone toggle and saving answers (no inline script: CSP).
"use strict";
(function () {
  function csrf() {
    var m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.getAttribute("content") : "";
  }
  function setOpacity(v) {
    document.querySelectorAll("img.overlay").forEach(function (img) { img.style.opacity = String(v / 100); });
  }
  var slider = document.getElementById("opacity");
  if (slider) {
    setOpacity(slider.value);
    slider.addEventListener("input", function () { setOpacity(slider.value); });
  }
  // Maps the run does not store are recomputed on demand: fetch them one at a time after the page shows,
  // with a "computing…" placeholder that becomes the server's one-line reason if the map cannot be made.
  var pending = Array.prototype.slice.call(document.querySelectorAll("img.overlay.live[data-src]"));
  function next() {
    var img = pending.shift();
    if (!img) { return; }
    var note = img.parentNode.querySelector(".pending");
    fetch(img.dataset.src, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) {
        return r.json().then(function (j) { throw new Error(j.detail || ("HTTP " + r.status)); },
          function () { throw new Error("HTTP " + r.status); });
      }
      // the server keeps the rendered PNG in its cache: loading it into the image is cheap now
      img.addEventListener("load", function () { if (note) { note.remove(); } });
      img.src = img.dataset.src;
    }).catch(function (err) {
      if (note) { note.textContent = err.message; }
    }).then(next);
  }
  next();
  var truth = document.getElementById("show-truth");
  if (truth) {
    truth.addEventListener("change", function () {
      document.querySelectorAll(".truth").forEach(function (el) { el.style.display = truth.checked ? "" : "none"; });
    });
  }
  var toggle = document.getElementById("toggle-map");
  if (toggle) {
    toggle.addEventListener("click", function () {
      var hidden = toggle.getAttribute("aria-pressed") === "true";
      document.querySelectorAll("img.overlay").forEach(function (img) { img.style.visibility = hidden ? "" : "hidden"; });
      toggle.setAttribute("aria-pressed", hidden ? "false" : "true");
      toggle.textContent = hidden ? "Image alone" : "Show map";
    });
  }
  var rater = document.getElementById("rater");
  if (rater) {
    var status = document.getElementById("status");
    document.querySelectorAll("button.answer").forEach(function (btn) {
      btn.addEventListener("click", function () {
        var body = { position: Number(rater.dataset.position), value: Number(btn.dataset.value) };
        status.textContent = "saving…";
        fetch("/r/" + encodeURIComponent(rater.dataset.token) + "/answer", {
          method: "POST",
          headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
          body: JSON.stringify(body),
          credentials: "same-origin"
        }).then(function (r) {
          if (!r.ok) { return r.json().then(function (j) { throw new Error(j.detail || r.status); }); }
          window.location.assign(rater.dataset.next);
        }).catch(function (e) { status.textContent = "not saved: " + e.message; });
      });
    });
    document.addEventListener("keydown", function (ev) {
      var b = document.querySelector('button.answer[data-value="' + ev.key + '"]');
      if (b) { b.click(); }
    });
  }
})();

// robustxai studio, annotate room: points, boxes, polygons; select, move, delete, undo; saved on every change.
"use strict";
(function () {
  var root = document.getElementById("annotator");
  if (!root) { return; }
  var W = Number(root.dataset.width), H = Number(root.dataset.height);
  var svg = document.getElementById("ann-svg");
  var statusEl = document.getElementById("ann-status");
  var noteEl = document.getElementById("note");
  var NS = "http://www.w3.org/2000/svg";
  var state = JSON.parse(root.dataset.state);
  var history = [];
  var tool = "point", selected = -1, draft = null, drag = null, saveTimer = null;
  document.querySelector(".canvas").style.aspectRatio = W + " / " + H;

  function csrf() { return document.querySelector('meta[name="csrf-token"]').getAttribute("content"); }
  function snapshot() { history.push(JSON.stringify(state)); if (history.length > 200) { history.shift(); } }
  function changed() { snapshot(); }

  function save() {
    statusEl.textContent = "saving…";
    var url = "/annotate/" + root.dataset.index + "/save?who=" + encodeURIComponent(root.dataset.who);
    state.note = noteEl.value;
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify(state)
    }).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) { throw new Error(j.detail || r.status); }
        statusEl.textContent = "saved " + new Date(j.updated_at * 1000).toLocaleTimeString() + " (" + j.shapes + " shapes)";
      });
    }).catch(function (e) { statusEl.textContent = "NOT saved: " + e.message; });
  }

  function el(name, attrs) {
    var e = document.createElementNS(NS, name);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }
  function draw() {
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    var r = (W + H) / 80;
    state.shapes.forEach(function (s, i) {
      var cls = "shape " + s.type + (i === selected ? " selected" : ""), e;
      if (s.type === "point") {
        e = el("circle", { cx: s.points[0][0] + 0.5, cy: s.points[0][1] + 0.5, r: r, "class": cls });
      } else if (s.type === "box") {
        var p = s.points, x = Math.min(p[0][0], p[1][0]), y = Math.min(p[0][1], p[1][1]);
        e = el("rect", { x: x, y: y, width: Math.abs(p[1][0] - p[0][0]), height: Math.abs(p[1][1] - p[0][1]), "class": cls });
      } else {
        e = el("polygon", { points: s.points.map(function (q) { return q.join(","); }).join(" "), "class": cls });
      }
      e.dataset.index = String(i);
      svg.appendChild(e);
    });
    if (draft && draft.points.length) {
      var pts = draft.points.map(function (q) { return q.join(","); }).join(" ");
      svg.appendChild(el("polyline", { points: pts, "class": "draft" }));
    }
    document.querySelectorAll(".toolbar [data-tool]").forEach(function (b) {
      b.classList.toggle("active", b.dataset.tool === tool);
    });
    document.getElementById("no-finding").classList.toggle("on", !!state.no_finding);
  }
  function at(ev) {
    var pt = svg.createSVGPoint();
    pt.x = ev.clientX; pt.y = ev.clientY;
    var p = pt.matrixTransform(svg.getScreenCTM().inverse());
    return [Math.max(0, Math.min(W, p.x)), Math.max(0, Math.min(H, p.y))];
  }
  function round(v) { return Math.round(v * 100) / 100; }
  function add(shape) { changed(); state.shapes.push(shape); state.no_finding = false; selected = -1; draw(); save(); }

  svg.addEventListener("mousedown", function (ev) {
    var p = at(ev);
    if (tool === "box") { draft = { type: "box", start: p, points: [p] }; }
    else if (tool === "select") {
      var i = ev.target.dataset ? Number(ev.target.dataset.index) : NaN;
      selected = isNaN(i) ? -1 : i;
      if (selected >= 0) { changed(); drag = { last: p, moved: false }; }
      draw();
    }
  });
  svg.addEventListener("mousemove", function (ev) {
    var p = at(ev);
    if (draft && draft.type === "box") {
      var s = draft.start;
      draft.points = [s, [p[0], s[1]], p, [s[0], p[1]], s];
      draw();
    } else if (drag && selected >= 0) {
      var dx = p[0] - drag.last[0], dy = p[1] - drag.last[1];
      state.shapes[selected].points = state.shapes[selected].points.map(function (q) { return [round(q[0] + dx), round(q[1] + dy)]; });
      drag.last = p; drag.moved = true; draw();
    }
  });
  svg.addEventListener("mouseup", function (ev) {
    var p = at(ev);
    if (draft && draft.type === "box") {
      var s = draft.start; draft = null;
      if (Math.abs(p[0] - s[0]) >= 0.5 && Math.abs(p[1] - s[1]) >= 0.5) {
        add({ type: "box", points: [[round(s[0]), round(s[1])], [round(p[0]), round(p[1])]] });
      } else { draw(); }
    } else if (drag) {
      if (drag.moved) { save(); } else { history.pop(); }
      drag = null;
    }
  });
  svg.addEventListener("click", function (ev) {
    var p = at(ev);
    if (tool === "point") { add({ type: "point", points: [[round(p[0] - 0.5), round(p[1] - 0.5)]] }); }
    else if (tool === "polygon") {
      if (!draft) { draft = { type: "polygon", points: [] }; }
      draft.points.push([round(p[0]), round(p[1])]);
      draw();
    }
  });
  svg.addEventListener("dblclick", function () { closePolygon(); });
  function closePolygon() {
    if (draft && draft.type === "polygon") {
      var pts = draft.points.filter(function (q, i, a) { return i === 0 || q[0] !== a[i - 1][0] || q[1] !== a[i - 1][1]; });
      draft = null;
      if (pts.length >= 3) { add({ type: "polygon", points: pts }); } else { draw(); }
    }
  }
  function removeSelected() {
    if (selected < 0) { return; }
    changed(); state.shapes.splice(selected, 1); selected = -1; draw(); save();
  }
  function undo() {
    if (!history.length) { return; }
    state = JSON.parse(history.pop()); selected = -1; draft = null; draw(); save();
  }
  function noFinding() {
    changed(); state.no_finding = !state.no_finding;
    if (state.no_finding) { state.shapes = []; }
    selected = -1; draw(); save();
  }
  function setTool(t) { tool = t; draft = null; selected = -1; draw(); }

  document.querySelectorAll(".toolbar [data-tool]").forEach(function (b) {
    b.addEventListener("click", function () { setTool(b.dataset.tool); });
  });
  document.getElementById("delete").addEventListener("click", removeSelected);
  document.getElementById("undo").addEventListener("click", undo);
  document.getElementById("no-finding").addEventListener("click", noFinding);
  noteEl.addEventListener("input", function () {
    clearTimeout(saveTimer); saveTimer = setTimeout(save, 500);
  });
  document.addEventListener("keydown", function (ev) {
    if (ev.target === noteEl) { return; }
    var k = ev.key.toLowerCase();
    if ((ev.ctrlKey || ev.metaKey) && k === "z") { ev.preventDefault(); undo(); return; }
    if (k === "p") { setTool("point"); } else if (k === "b") { setTool("box"); }
    else if (k === "g") { setTool("polygon"); } else if (k === "s") { setTool("select"); }
    else if (k === "z") { undo(); } else if (k === "n") { noFinding(); }
    else if (k === "enter") { closePolygon(); } else if (k === "escape") { draft = null; draw(); }
    else if (k === "delete" || k === "backspace") { removeSelected(); }
  });
  draw();
})();

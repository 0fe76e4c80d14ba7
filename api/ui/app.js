// provml web UI: one script draws every page under /ui/ from the JSON API.
//
// Safety rule: data from the store only ever reaches the page as text (textContent,
// setAttribute with data-free names); nothing is parsed as HTML. Links built from ids go
// through encodeURIComponent into our own /ui/ pages.
"use strict";

(() => {
  const TOKEN_KEY = "provml-token";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const PREFIXES = [
    ["prov:", "http://www.w3.org/ns/prov#"],
    ["provml:", "https://w3id.org/provml/ns#"],
    ["mls:", "http://www.w3.org/ns/mls#"],
    ["rdfs:", "http://www.w3.org/2000/01/rdf-schema#"],
    ["rdf:", "http://www.w3.org/1999/02/22-rdf-syntax-ns#"],
    ["xsd:", "http://www.w3.org/2001/XMLSchema#"],
  ];
  const ML = "https://w3id.org/provml/ns#";

  // ------------------------------------------------------------------ DOM helpers

  function build(ns, tag, attrs, children) {
    const el = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name.startsWith("on") && typeof value === "function") {
        el.addEventListener(name.slice(2), value);
      } else if (name === "text") {
        el.textContent = String(value);
      } else {
        el.setAttribute(name, value === true ? "" : String(value));
      }
    }
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }
  const h = (tag, attrs, ...children) => build(null, tag, attrs, children);
  const s = (tag, attrs, ...children) => build(SVG_NS, tag, attrs, children);

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return el;
  }

  const main = () => document.getElementById("main");
  const params = () => new URLSearchParams(window.location.search);

  function setTitle(text) {
    document.title = text ? `${text} · provml` : "provml";
  }

  function short(iri) {
    if (typeof iri !== "string") return String(iri);
    for (const [prefix, ns] of PREFIXES) if (iri.startsWith(ns)) return prefix + iri.slice(ns.length);
    return iri;
  }

  function truncate(text, n) {
    text = String(text ?? "");
    return text.length > n ? text.slice(0, n - 1) + "…" : text;
  }

  function fmtTime(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return String(iso);
    return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC").replace(/Z$/, " UTC");
  }

  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
    if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
    if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
    const m = Math.floor(seconds / 60);
    if (m < 60) return `${m} min ${Math.round(seconds % 60)} s`;
    return `${Math.floor(m / 60)} h ${m % 60} min`;
  }

  function fmtNumber(v) {
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v)) return String(v);
    return Math.abs(v) >= 1e4 || Math.abs(v) < 1e-3 ? v.toExponential(3) : v.toPrecision(4);
  }

  function duration(node) {
    if (!node.startTime || !node.endTime) return null;
    return (new Date(node.endTime) - new Date(node.startTime)) / 1000;
  }

  function attr(node, localName) {
    for (const [name, value] of node.attributes || []) if (name === ML + localName) return plain(value);
    return undefined;
  }

  function plain(value) {
    if (value && typeof value === "object") {
      if ("@id" in value) return value["@id"];
      if ("@value" in value) return value["@value"];
    }
    return value;
  }

  // ------------------------------------------------------------------ links

  const link = {
    model: (id) => `/ui/model?id=${encodeURIComponent(id)}`,
    lineage: (id, extra) =>
      `/ui/lineage?id=${encodeURIComponent(id)}${extra ? "&" + new URLSearchParams(extra) : ""}`,
    run: (id) => `/ui/run?id=${encodeURIComponent(id)}`,
    node: (id) => `/ui/node?id=${encodeURIComponent(id)}`,
    compare: (a, b) => `/ui/compare?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`,
  };

  function pageFor(node) {
    if (node.class === "Model") return link.model(node.id);
    if (node.class === "WorkflowExecution") return link.run(node.id);
    return link.lineage(node.id);
  }

  function nodeAnchor(node) {
    return h("a", { href: pageFor(node), title: node.id }, node.label || short(node.id));
  }

  // ------------------------------------------------------------------ API access

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function request(path, { method = "GET", body, accept = "application/json", type } = {}) {
    const headers = { Accept: accept };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.Authorization = `Bearer ${token}`;
    if (type) headers["Content-Type"] = type;
    let response;
    try {
      response = await fetch(path, { method, headers, body });
    } catch (err) {
      throw new ApiError(0, "network", "The provml server cannot be reached. Is `provml serve` still running?");
    }
    if (!response.ok) {
      let code = `http_${response.status}`;
      let message = response.statusText || "request failed";
      try {
        const data = await response.json();
        code = data.error || code;
        message = data.message || message;
      } catch (err) {
        // Not a provml error body (e.g. a proxy's page): keep the status text.
      }
      throw new ApiError(response.status, code, message);
    }
    return response;
  }

  const api = async (path, options) => (await request(path, options)).json();

  function errorBox(err) {
    const box = h("div", { class: "message error", role: "alert" });
    if (!(err instanceof ApiError)) {
      box.append(h("strong", {}, "Something went wrong in the page: "), String(err && err.message ? err.message : err));
      return box;
    }
    if (err.status === 401 || err.status === 403) {
      box.append(h("strong", {}, "This server needs a read token. "), err.message,
        " Enter it under “Token” at the top right.");
    } else if (err.status === 404) {
      box.append(h("strong", {}, "Not found. "), err.message);
    } else if (err.status >= 500) {
      box.append(h("strong", {}, `The server failed (HTTP ${err.status}). `), err.message);
    } else if (err.status === 0) {
      box.append(h("strong", {}, "No connection. "), err.message);
    } else {
      box.append(h("strong", {}, `The request was refused (HTTP ${err.status}). `), err.message);
    }
    return box;
  }

  // Pages ask /lookup first so an unknown id is a message, not a failed request.
  async function lookup(id) {
    return api(`/api/v1/ui/lookup?id=${encodeURIComponent(id)}`);
  }

  function unknownId(root, id, found) {
    setTitle("Unknown id");
    root.append(
      h("h1", {}, "Unknown id"),
      h("div", { class: "message warn", role: "alert" }, "This store has no node with the id ",
        h("span", { class: "iri" }, id), "."),
    );
    if (found && found.suggestions && found.suggestions.length) {
      root.append(h("h2", {}, "Similar nodes"),
        h("ul", { class: "plain" }, found.suggestions.map((n) =>
          h("li", {}, nodeAnchor(n), " ", h("span", { class: "badge" }, n.class || n.kind)))));
    }
    root.append(h("p", {}, h("a", { href: "/ui/search" }, "Search the store"), " or go ",
      h("a", { href: "/ui/" }, "home"), "."));
  }

  function missingParam(root, what) {
    root.append(h("h1", {}, "Nothing selected"),
      h("div", { class: "message warn", role: "alert" }, `This page needs ${what}. `,
        h("a", { href: "/ui/search" }, "Search"), " for one."));
  }

  // ------------------------------------------------------------------ small widgets

  function table(headers, rows, { caption, numeric = [] } = {}) {
    return h("table", {},
      caption ? h("caption", { class: "visually-hidden" }, caption) : null,
      h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, rows.map((row) => h("tr", {}, row.map((cell, i) =>
        h("td", { class: numeric.includes(i) ? "num" : null }, cell))))));
  }

  function statusText(status) {
    if (!status) return "—";
    return h("span", { class: `status-${status}` }, status);
  }

  function valueNode(value) {
    if (value && typeof value === "object") {
      if ("@id" in value) return h("a", { href: link.node(value["@id"]), class: "iri" }, short(value["@id"]));
      if ("@value" in value) {
        return h("span", {}, String(value["@value"]),
          value["@type"] ? h("span", { class: "badge" }, short(value["@type"])) : null,
          value["@language"] ? h("span", { class: "badge" }, value["@language"]) : null);
      }
      return JSON.stringify(value);
    }
    return typeof value === "number" ? fmtNumber(value) : String(value);
  }

  function attributesTable(node) {
    const rows = [
      ["id", h("span", { class: "iri" }, node.id)],
      ["PROV kind", node.kind],
      ["PROV-ML class", node.class || "—"],
    ];
    if (node.startTime) rows.push(["started", fmtTime(node.startTime)]);
    if (node.endTime) rows.push(["ended", fmtTime(node.endTime)]);
    const d = duration(node);
    if (d !== null) rows.push(["duration", fmtDuration(d)]);
    for (const [name, value] of node.attributes || []) rows.push([short(name), valueNode(value)]);
    return h("table", {}, h("tbody", {}, rows.map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", {}, v)))));
  }

  async function download(filename, blob) {
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: filename });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  // ------------------------------------------------------------------ home

  async function homePage(root) {
    setTitle("");
    const summary = await api("/api/v1/ui/summary");
    const c = summary.classes;
    const total = Object.values(summary.kinds).reduce((a, b) => a + b, 0);
    root.append(h("h1", {}, "Provenance of machine-learning workflows"));
    root.append(h("form", { class: "search-big", role: "search", action: "/ui/search" },
      h("label", { for: "home-q", class: "visually-hidden" }, "Search models, model versions, datasets, domain data and runs"),
      h("input", { id: "home-q", name: "q", type: "search", placeholder: "Search models, model versions, datasets, domain data, runs" }),
      h("button", { type: "submit" }, "Search")));
    if (total === 0) {
      root.append(h("div", { class: "message warn", role: "status" },
        h("strong", {}, "This store is empty. "),
        "Nothing has been recorded yet. Capture a workflow with the provml client, import PROV documents, or fill a store with the demo and serve it:",
        h("pre", { class: "cmd" }, "provml demo --store .provml-demo\nprovml serve --store .provml-demo")));
      return;
    }
    const card = (label, n, href) => h("div", { class: "card" },
      h("span", { class: "n" }, String(n ?? 0)), href ? h("a", { href }, label) : label);
    root.append(h("div", { class: "cards", "aria-label": "Counts" },
      card("models", c.Model, "/ui/search"),
      card("model versions", c.ModelVersion),
      card("feature sets", (c.FeatureSetData || 0) + (c.FeatureSet || 0)),
      card("domain data", c.DomainData),
      card("workflow runs", c.WorkflowExecution),
      card("executions", summary.kinds.activity),
      card("agents", summary.kinds.agent),
      card("bundles", summary.bundles)));
    const grid = h("div", { class: "grid2" });
    root.append(grid);
    grid.append(h("section", {}, h("h2", {}, "Latest runs"),
      summary.recent_runs.length
        ? table(["run", "started", "duration", "status"], summary.recent_runs.map((r) =>
          [h("a", { href: link.run(r.id) }, r.label || short(r.id)), fmtTime(r.startTime), fmtDuration(duration(r)), statusText(r.status)]), { numeric: [2] })
        : h("p", {}, "No workflow runs recorded.")));
    grid.append(h("section", {}, h("h2", {}, "Newest model versions"),
      summary.newest_model_versions.length
        ? table(["model version", "created", ""], summary.newest_model_versions.map((v) =>
          [h("a", { href: link.model(v.id) }, v.label || short(v.id)), fmtTime(v.created), h("a", { href: link.lineage(v.id) }, "lineage")]))
        : h("p", {}, "No model versions recorded.")));
    grid.append(h("section", {}, h("h2", {}, "Failed executions"),
      summary.failed_executions.length
        ? table(["execution", "class", "started"], summary.failed_executions.map((r) =>
          [h("a", { href: link.lineage(r.id) }, r.label || short(r.id)), r.class || r.kind, fmtTime(r.startTime)]))
        : h("p", {}, "No execution has failed.")));
    grid.append(h("section", {}, h("h2", {}, "Everything recorded"),
      table(["PROV-ML class", "count"], Object.entries(c).map(([k, n]) => [k, String(n)]), { numeric: [1] })));
  }

  // ------------------------------------------------------------------ search

  async function searchPage(root) {
    const q = params().get("q") || "";
    setTitle(q ? `Search “${q}”` : "Search");
    root.append(h("h1", {}, "Search"),
      h("form", { class: "search-big", role: "search", action: "/ui/search" },
        h("label", { for: "search-q", class: "visually-hidden" }, "Search text"),
        h("input", { id: "search-q", name: "q", type: "search", value: q, placeholder: "text in a name, label or IRI" }),
        h("button", { type: "submit" }, "Search")));
    const groups = [
      ["Models", "/api/v1/models"],
      ["Model versions", "/api/v1/model-versions"],
      ["Datasets and domain data", "/api/v1/datasets"],
      ["Runs and executions", "/api/v1/runs"],
    ];
    const qs = `?limit=50&q=${encodeURIComponent(q)}`;
    const pagesOf = await Promise.all(groups.map(([, path]) => api(path + qs)));
    let found = 0;
    const results = h("div", { id: "results" });
    groups.forEach(([title], i) => {
      const items = pagesOf[i].items;
      if (!items.length) return;
      found += items.length;
      results.append(h("section", {}, h("h2", {}, `${title} (${items.length}${pagesOf[i].next_offset !== null ? "+" : ""})`),
        table(["name", "class", "id"], items.map((n) => [nodeAnchor(n), n.class || n.kind, h("span", { class: "iri" }, n.id)]))));
    });
    if (!found) {
      results.append(h("div", { class: "message", role: "status" },
        q ? `Nothing matches “${q}”.` : "The store holds no models, datasets or runs yet."));
    }
    root.append(results);
  }

  // ------------------------------------------------------------------ model

  async function modelPage(root) {
    const id = params().get("id");
    if (!id) return missingParam(root, "a model id");
    const found = await lookup(id);
    if (!found.node) return unknownId(root, id, found);
    if (!["Model", "ModelVersion"].includes(found.node.class)) {
      root.append(h("h1", {}, found.node.label || short(id)),
        h("div", { class: "message warn", role: "alert" }, `This node is a ${found.node.class || found.node.kind}, not a model. `,
          h("a", { href: link.lineage(id) }, "See its lineage"), "."));
      return;
    }
    const data = await api(`/api/v1/ui/model?id=${encodeURIComponent(id)}`);
    const model = data.model;
    setTitle(model.label || short(model.id));
    root.append(h("h1", {}, "Model ", model.label || short(model.id)),
      h("p", { class: "sub iri" }, model.id));
    if (!data.versions.length) {
      root.append(h("div", { class: "message", role: "status" }, "No versions of this model are recorded."));
      return;
    }
    const metricNames = [...new Set(data.versions.flatMap((v) => Object.keys(v.metrics)))];
    root.append(h("h2", {}, `Versions (${data.versions.length})`));
    root.append(h("table", { id: "versions" },
      h("thead", {}, h("tr", {}, ["version", "created", "training run", "key metrics", "dataset", "lineage"].map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, data.versions.map((v) => h("tr", {},
        h("td", {}, h("a", { href: link.node(v.version.id) }, v.version.label || short(v.version.id))),
        h("td", {}, fmtTime(v.created)),
        h("td", {}, v.training.map((t) => h("div", {}, t.bundles.length ? h("a", { href: link.run(t.bundles[0]) }, t.label || short(t.id)) : t.label || short(t.id),
          " ", statusText(t.status)))),
        h("td", {}, metricNames.filter((m) => m in v.metrics).map((m) => h("div", {}, `${m} = ${fmtNumber(v.metrics[m])}`))),
        h("td", {}, v.datasets.map((d) => h("div", {}, h("a", { href: link.lineage(d.id) }, d.label || short(d.id))))),
        h("td", {}, h("a", { href: link.lineage(v.version.id, { direction: "up" }) }, "lineage")))))));
    if (data.versions.length >= 2) {
      const n = data.versions.length;
      root.append(h("p", {}, h("a", { class: "button secondary", href: link.compare(data.versions[n - 2].version.id, data.versions[n - 1].version.id) },
        `Compare ${data.versions[n - 2].version.label} with ${data.versions[n - 1].version.label}`)));
    }
  }

  // ------------------------------------------------------------------ node

  async function nodePage(root) {
    const id = params().get("id");
    if (!id) return missingParam(root, "a node id");
    const found = await lookup(id);
    if (!found.node) return unknownId(root, id, found);
    const node = found.node;
    setTitle(node.label || short(id));
    root.append(h("h1", {}, node.label || short(id)), h("p", { class: "sub" }, node.class || node.kind));
    root.append(h("p", { class: "toolbar" }, h("a", { href: link.lineage(id) }, "Lineage"),
      ["Model", "ModelVersion"].includes(node.class) ? h("a", { href: link.model(id) }, "Model page") : null,
      node.bundles.length ? h("a", { href: link.run(node.bundles[0]) }, "Run") : null));
    root.append(attributesTable(node));
  }

  // ------------------------------------------------------------------ lineage graph

  const CATEGORIES = [
    { key: "domain", label: "domain data", fill: "#ffe38f", match: (n) => n.class === "DomainData" },
    { key: "features", label: "feature set data", fill: "#ffc48c", match: (n) => ["FeatureSetData", "FeatureSet", "Feature", "DatasetCharacteristic"].includes(n.class) },
    { key: "model", label: "models, model versions", fill: "#a8dc96", match: (n) => ["ModelVersion", "Model"].includes(n.class) },
    { key: "hyper", label: "hyperparameters", fill: "#ddd0f7", match: (n) => /Hyperparameter/.test(n.class || "") },
    { key: "metric", label: "metrics, evaluations", fill: "#f7c6dc", match: (n) => ["MetricValue", "ModelEvaluation", "EvaluationMeasure"].includes(n.class) },
    { key: "result", label: "inference results", fill: "#b9ece8", match: (n) => n.class === "InferenceResult" },
    { key: "execution", label: "executions (activities)", fill: "#a9c9f2", match: (n) => n.kind === "activity" },
    { key: "agent", label: "agents", fill: "#f3c3a1", match: (n) => n.kind === "agent" },
    { key: "plan", label: "plans, algorithms, tasks", fill: "#e3e3e3", match: (n) => /^(Study|Learning|Training$|Validation$|Evaluation$|DataTransformation$|Inference$|Algorithm|LearningTask)/.test(n.class || "") && n.kind === "entity" },
    { key: "other", label: "other entities", fill: "#fff7d1", match: () => true },
  ];
  const categoryOf = (n) => CATEGORIES.find((c) => c.match(n));
  const NODE_W = 176, NODE_H = 42, COL_W = 236, ROW_H = 56, PAD = 30;

  function shapeFor(kind, w, hgt, fill) {
    if (kind === "activity") return s("rect", { class: "shape", x: -w / 2, y: -hgt / 2, width: w, height: hgt, fill, stroke: "#1d3f73", "stroke-width": 1.3 });
    if (kind === "agent") {
      const pts = [[-w / 2, -hgt / 6], [0, -hgt / 2], [w / 2, -hgt / 6], [w / 2, hgt / 2], [-w / 2, hgt / 2]];
      return s("polygon", { class: "shape", points: pts.map((p) => p.join(",")).join(" "), fill, stroke: "#7a3d10", "stroke-width": 1.3 });
    }
    return s("ellipse", { class: "shape", rx: w / 2, ry: hgt / 2, fill, stroke: "#6b5a12", "stroke-width": 1.3 });
  }

  // Layered left-to-right layout: what a record depends on (the object of its relations)
  // is drawn left of it, so derivation reads from raw data on the left to results.
  function layout(ids, edges) {
    const preds = new Map(ids.map((id) => [id, []]));
    const succs = new Map(ids.map((id) => [id, []]));
    for (const e of edges) {
      if (e.subject === e.object || !preds.has(e.subject) || !preds.has(e.object)) continue;
      preds.get(e.subject).push(e.object);
      succs.get(e.object).push(e.subject);
    }
    const rank = new Map();
    const state = new Map();
    const visit = (start) => {
      // Iterative depth-first walk; an edge back to a node on the stack (a cycle) is ignored.
      const stack = [[start, 0]];
      state.set(start, 1);
      while (stack.length) {
        const top = stack[stack.length - 1];
        const [id, i] = top;
        const ps = preds.get(id);
        if (i < ps.length) {
          top[1] += 1;
          const p = ps[i];
          if (!state.has(p)) { state.set(p, 1); stack.push([p, 0]); }
        } else {
          let r = 0;
          for (const p of ps) if (state.get(p) === 2) r = Math.max(r, rank.get(p) + 1);
          rank.set(id, r);
          state.set(id, 2);
          stack.pop();
        }
      }
    };
    for (const id of ids) if (!state.has(id)) visit(id);
    // Pull each node right, next to the first record that depends on it, so inputs such
    // as hyperparameters sit beside the execution that used them, not with the raw data.
    for (const id of [...ids].sort((a, b) => rank.get(b) - rank.get(a))) {
      const later = succs.get(id).map((n) => rank.get(n)).filter((r) => r > rank.get(id));
      if (later.length) rank.set(id, Math.min(...later) - 1);
    }
    const columns = [];
    for (const id of ids) (columns[rank.get(id)] ||= []).push(id);
    for (let i = 0; i < columns.length; i++) columns[i] ||= [];
    const order = new Map();
    const place = () => columns.forEach((col) => col.forEach((id, i) => order.set(id, i)));
    place();
    const barycentre = (col, neighbours) => {
      const key = new Map(col.map((id) => {
        const ns = neighbours.get(id).filter((n) => order.has(n));
        return [id, ns.length ? ns.reduce((a, n) => a + order.get(n), 0) / ns.length : order.get(id)];
      }));
      col.sort((a, b) => key.get(a) - key.get(b));
    };
    for (let sweep = 0; sweep < 4; sweep++) {
      for (let c = 1; c < columns.length; c++) { barycentre(columns[c], preds); place(); }
      for (let c = columns.length - 2; c >= 0; c--) { barycentre(columns[c], succs); place(); }
    }
    const tallest = Math.max(1, ...columns.map((c) => c.length));
    const pos = new Map();
    columns.forEach((col, c) => {
      const offset = ((tallest - col.length) * ROW_H) / 2;
      col.forEach((id, i) => pos.set(id, { x: PAD + NODE_W / 2 + c * COL_W, y: PAD + NODE_H / 2 + offset + i * ROW_H }));
    });
    return { pos, width: PAD * 2 + NODE_W + (columns.length - 1) * COL_W, height: PAD * 2 + NODE_H + (tallest - 1) * ROW_H };
  }

  function shortestPath(a, b, ids, edges) {
    const adjacent = new Map(ids.map((id) => [id, []]));
    edges.forEach((e, i) => {
      if (!adjacent.has(e.subject) || !adjacent.has(e.object)) return;
      adjacent.get(e.subject).push([e.object, i]);
      adjacent.get(e.object).push([e.subject, i]);
    });
    const back = new Map([[a, null]]);
    const queue = [a];
    while (queue.length) {
      const id = queue.shift();
      if (id === b) break;
      for (const [next, edge] of adjacent.get(id) || []) {
        if (!back.has(next)) { back.set(next, [id, edge]); queue.push(next); }
      }
    }
    if (!back.has(b)) return null;
    const nodes = new Set([b]);
    const edgeIdx = new Set();
    for (let step = back.get(b); step; step = back.get(step[0])) { nodes.add(step[0]); edgeIdx.add(step[1]); }
    return { nodes, edges: edgeIdx };
  }

  const GRAPH_CSS = `text{font:12px sans-serif;fill:#111}.edge{fill:none;stroke:#7b818a;stroke-width:1.2}
.edge.on-path{stroke:#b00060;stroke-width:3}.node.on-path>.shape{stroke:#b00060;stroke-width:4}.node.root>.shape{stroke-width:3}`;

  async function lineagePage(root) {
    const p = params();
    const id = p.get("id");
    if (!id) return missingParam(root, "a node id");
    const found = await lookup(id);
    if (!found.node) return unknownId(root, id, found);
    const rootNode = found.node;
    const state = {
      nodes: new Map(),
      edges: new Map(),
      direction: p.get("direction") || "both",
      depth: p.get("depth") || "",
      hidden: new Set(),
      seen: new Set(),
      autoHide: false,
      selected: null,
      pathFrom: null,
      pathTo: null,
      scale: 1,
    };
    setTitle(`Lineage of ${rootNode.label || short(id)}`);
    root.append(h("h1", {}, "Lineage of ", rootNode.label || short(id)),
      h("p", { class: "sub" }, rootNode.class || rootNode.kind, " · ", h("span", { class: "iri" }, id)));

    const direction = h("select", { id: "direction" },
      [["both", "upstream and downstream"], ["up", "upstream (what it came from)"], ["down", "downstream (what was made from it)"]]
        .map(([v, t]) => h("option", { value: v, selected: v === state.direction }, t)));
    const depth = h("select", { id: "depth" },
      [["1", "1"], ["2", "2"], ["3", "3"], ["4", "4"], ["6", "6"], ["10", "10"], ["", "all"]]
        .map(([v, t]) => h("option", { value: v, selected: v === state.depth }, t)));
    const status = h("span", { id: "graph-status", role: "status", "aria-live": "polite" });
    const exportFormat = h("select", { id: "export-format" },
      [["provn", "PROV-N"], ["json", "PROV-JSON"], ["turtle", "Turtle"], ["xml", "PROV-XML"], ["jsonld", "JSON-LD"], ["svg", "SVG image"], ["png", "PNG image"]]
        .map(([v, t]) => h("option", { value: v }, t)));
    const toolbar = h("div", { class: "toolbar" },
      h("label", {}, "Direction", direction),
      h("label", {}, "Depth", depth),
      h("button", { type: "button", class: "secondary", onclick: () => zoom(1.25), "aria-label": "Zoom in" }, "+"),
      h("button", { type: "button", class: "secondary", onclick: () => zoom(0.8), "aria-label": "Zoom out" }, "−"),
      h("button", { type: "button", class: "secondary", id: "fit", onclick: () => fit() }, "Fit"),
      h("button", { type: "button", class: "secondary", id: "clear-path", onclick: () => { state.pathFrom = state.pathTo = null; render(); } }, "Clear path"),
      h("label", {}, "Export shown graph", exportFormat),
      h("button", { type: "button", id: "export", onclick: () => exportGraph(exportFormat.value) }, "Export"),
      status);
    const legend = h("div", { class: "legend", id: "legend", "aria-label": "Legend (press to hide or show a kind of node)" });
    const box = h("div", { class: "graph-box", id: "graph-box" });
    const details = h("aside", { class: "details", id: "details", "aria-label": "Node details", tabindex: "-1" },
      h("p", {}, "Select a node (click it, or Tab to it and press Enter) to see its attributes."));
    root.append(toolbar, legend, h("div", { class: "lineage" }, box, details));

    const edgeKey = (e) => `${e.kind}\u0000${e.subject}\u0000${e.object}\u0000${e.id || ""}`;
    function merge(view) {
      let added = 0;
      for (const n of view.nodes) {
        // A big graph starts without its many small value nodes; the legend shows them.
        if (!state.nodes.has(n.id) && !state.seen.has(categoryOf(n).key) && state.autoHide) {
          if (["hyper", "metric"].includes(categoryOf(n).key)) state.hidden.add(categoryOf(n).key);
        }
        state.seen.add(categoryOf(n).key);
        if (!state.nodes.has(n.id)) added += 1;
        state.nodes.set(n.id, { ...(state.nodes.get(n.id) || {}), ...n });
      }
      for (const e of view.edges) state.edges.set(edgeKey(e), e);
      if (view.truncated) state.truncated = true;
      return added;
    }

    async function walk(nodeId, dir, d) {
      const q = new URLSearchParams({ id: nodeId, direction: dir, max_nodes: "2000" });
      if (d !== "") q.set("depth", d);
      return api(`/api/v1/lineage?${q}`);
    }

    async function load() {
      state.nodes.clear();
      state.edges.clear();
      state.truncated = false;
      status.textContent = "Loading…";
      const dirs = state.direction === "both" ? ["up", "down"] : [state.direction];
      const views = await Promise.all(dirs.map((d) => walk(id, d, state.depth)));
      state.autoHide = views.reduce((a, v) => a + v.nodes.length, 0) > 60 && state.hidden.size === 0;
      for (const view of views) merge(view);
      state.autoHide = false;
      const url = new URL(window.location.href);
      url.searchParams.set("direction", state.direction);
      if (state.depth) url.searchParams.set("depth", state.depth); else url.searchParams.delete("depth");
      history.replaceState(null, "", url);
      render();
      // Start with the root in view: in a wide graph it is at one edge.
      const centre = box.querySelector(`[data-id="${CSS.escape(id)}"]`);
      if (centre) {
        const r = centre.getBoundingClientRect(), b = box.getBoundingClientRect();
        box.scrollLeft += r.left - b.left - box.clientWidth / 2 + r.width / 2;
        box.scrollTop += r.top - b.top - box.clientHeight / 2 + r.height / 2;
      }
    }

    async function expand(nodeId) {
      status.textContent = "Expanding…";
      const views = await Promise.all(["up", "down"].map((d) => walk(nodeId, d, "1")));
      const added = views.reduce((a, v) => a + merge(v), 0);
      render();
      status.textContent = `${added} node${added === 1 ? "" : "s"} added · ${status.textContent}`;
      const el = box.querySelector(`[data-id="${CSS.escape(nodeId)}"]`);
      if (el) el.focus();
    }

    function visibleIds() {
      return [...state.nodes.values()].filter((n) => n.id === id || !state.hidden.has(categoryOf(n).key)).map((n) => n.id);
    }

    function zoom(factor) {
      state.scale = Math.min(3, Math.max(0.2, state.scale * factor));
      const svg = box.querySelector("svg");
      if (svg) {
        svg.setAttribute("width", svg.viewBox.baseVal.width * state.scale);
        svg.setAttribute("height", svg.viewBox.baseVal.height * state.scale);
      }
    }

    function fit() {
      const svg = box.querySelector("svg");
      if (!svg) return;
      const { width, height } = svg.viewBox.baseVal;
      state.scale = 1;
      zoom(Math.min(1, (box.clientWidth - 4) / width, (box.clientHeight - 4) / height));
    }

    function drawLegend() {
      clear(legend);
      for (const [kind, label] of [["entity", "entity"], ["activity", "activity"], ["agent", "agent"]]) {
        legend.append(h("span", { class: "item" }, s("svg", { width: 30, height: 18, viewBox: "-16 -10 32 20", "aria-hidden": "true" }, shapeFor(kind, 28, 16, "#fff")), label));
      }
      const present = new Set([...state.nodes.values()].map((n) => categoryOf(n).key));
      for (const c of CATEGORIES) {
        if (!present.has(c.key)) continue;
        const on = !state.hidden.has(c.key);
        legend.append(h("button", {
          type: "button", class: "item secondary", "aria-pressed": on ? "true" : "false", "data-category": c.key,
          title: on ? `Hide ${c.label}` : `Show ${c.label}`,
          onclick: () => { if (on) state.hidden.add(c.key); else state.hidden.delete(c.key); render(); },
        }, s("svg", { width: 14, height: 14, "aria-hidden": "true" }, s("rect", { width: 14, height: 14, fill: c.fill, stroke: "#333" })),
        on ? c.label : h("s", {}, c.label)));
      }
      legend.append(h("span", { class: "item" }, "Arrows point as PROV relations do: from a record to what it used or came from."));
    }

    function render() {
      drawLegend();
      const ids = visibleIds();
      const shown = new Set(ids);
      const edges = [...state.edges.values()].filter((e) => shown.has(e.subject) && shown.has(e.object));
      const { pos, width, height } = layout(ids, edges);
      const path = state.pathFrom && state.pathTo && shown.has(state.pathFrom) && shown.has(state.pathTo)
        ? shortestPath(state.pathFrom, state.pathTo, ids, edges) : null;
      const svg = s("svg", { class: "graph", id: "graph", xmlns: SVG_NS, viewBox: `0 0 ${width} ${height}`, width: width * state.scale, height: height * state.scale, role: "group", "aria-label": `Lineage graph with ${ids.length} nodes` },
        s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
          s("path", { d: "M0,0 L10,5 L0,10 z", fill: "#6b717a" }))));
      const edgeLayer = s("g", { class: "edges" });
      edges.forEach((e, i) => {
        const a = pos.get(e.subject), b = pos.get(e.object);
        // From the subject's left side to the object's right side (objects sit to the left).
        const x1 = a.x - NODE_W / 2, x2 = b.x + NODE_W / 2;
        const bend = Math.max(40, Math.abs(x1 - x2) / 2);
        edgeLayer.append(s("path", {
          class: `edge${path && path.edges.has(i) ? " on-path" : ""}`,
          d: `M${x1},${a.y} C${x1 - bend},${a.y} ${x2 + bend},${b.y} ${x2},${b.y}`,
          "marker-end": "url(#arrow)",
        }, s("title", {}, `${e.kind}: ${state.nodes.get(e.subject).label || e.subject} → ${state.nodes.get(e.object).label || e.object}`)));
      });
      svg.append(edgeLayer);
      const nodeLayer = s("g", { class: "nodes" });
      const ordered = [...ids].sort((u, v) => pos.get(u).x - pos.get(v).x || pos.get(u).y - pos.get(v).y);
      for (const nodeId of ordered) {
        const n = state.nodes.get(nodeId);
        const { x, y } = pos.get(nodeId);
        const classes = ["node", nodeId === id && "root", nodeId === state.selected && "selected",
          path && path.nodes.has(nodeId) && "on-path", (nodeId === state.pathFrom || nodeId === state.pathTo) && "endpoint"].filter(Boolean).join(" ");
        const name = n.label || short(n.id);
        const g = s("g", {
          class: classes, transform: `translate(${x},${y})`, tabindex: "0", role: "button", "data-id": nodeId,
          "data-class": n.class || "", "aria-label": `${name}, ${n.class || n.kind}`,
          onclick: (ev) => (ev.shiftKey ? setPathEnd(nodeId) : select(nodeId)),
          onkeydown: (ev) => {
            if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); select(nodeId); }
            else if (ev.key === "e") { ev.preventDefault(); expand(nodeId).catch(fail); }
          },
        },
        s("title", {}, `${name}\n${n.class || n.kind}\n${n.id}`),
        shapeFor(n.kind, NODE_W, NODE_H, categoryOf(n).fill),
        s("text", { "text-anchor": "middle", y: -2 }, truncate(name, 26)),
        s("text", { "text-anchor": "middle", y: 13, class: "sub" }, truncate(n.class || n.kind, 30)));
        nodeLayer.append(g);
      }
      svg.append(nodeLayer);
      clear(box).append(svg);
      const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
      let text = `${plural(ids.length, "node")}, ${plural(edges.length, "relation")} shown`;
      if (ids.length < state.nodes.size) text += ` (${state.nodes.size - ids.length} hidden)`;
      if (state.truncated) text += " · the walk hit its size bound: some nodes are left out";
      if (state.pathFrom && state.pathTo) text += path ? ` · path of ${path.edges.size} relations highlighted` : " · no path between the two selected nodes in the shown graph";
      status.textContent = text;
      if (state.selected && state.nodes.has(state.selected)) showDetails(state.selected, false);
    }

    function setPathEnd(nodeId) {
      if (!state.pathFrom || (state.pathFrom && state.pathTo)) { state.pathFrom = nodeId; state.pathTo = null; }
      else state.pathTo = nodeId;
      render();
    }

    function select(nodeId) {
      state.selected = nodeId;
      render();
      showDetails(nodeId, true);
    }

    function showDetails(nodeId, focus) {
      const n = state.nodes.get(nodeId);
      const isModel = ["Model", "ModelVersion"].includes(n.class);
      clear(details).append(
        h("h2", {}, n.label || short(n.id)),
        h("div", { class: "actions" },
          h("button", { type: "button", id: "expand", onclick: () => expand(nodeId).catch(fail) }, "Expand neighbours"),
          h("button", { type: "button", class: "secondary", id: "path-from", onclick: () => { state.pathFrom = nodeId; render(); } }, "Path from here"),
          h("button", { type: "button", class: "secondary", id: "path-to", onclick: () => { state.pathTo = nodeId; render(); } }, "Path to here"),
          nodeId !== id ? h("a", { class: "button secondary", href: link.lineage(nodeId) }, "Centre here") : null,
          isModel ? h("a", { class: "button secondary", href: link.model(nodeId) }, "Model page") : null,
          n.kind === "activity" && n.bundles.length ? h("a", { class: "button secondary", href: link.run(n.bundles[0]) }, "Run page") : null),
        attributesTable(n),
        n.bundles.length ? h("p", {}, "Recorded in: ", n.bundles.map((b) => h("div", {}, h("a", { class: "iri", href: link.run(b) }, short(b)))),
          // A lineage answer lists the first bundles of a node and counts them all.
          (n.bundle_count || 0) > n.bundles.length ? h("div", { class: "more-bundles" }, `and ${n.bundle_count - n.bundles.length} more`) : null) : null);
      if (focus) details.focus({ preventScroll: true });
    }

    function fail(err) {
      details.prepend(errorBox(err));
    }

    function standaloneSvg() {
      const clone = box.querySelector("svg").cloneNode(true);
      clone.setAttribute("width", clone.viewBox.baseVal.width);
      clone.setAttribute("height", clone.viewBox.baseVal.height);
      clone.insertBefore(s("style", {}, GRAPH_CSS), clone.firstChild);
      clone.insertBefore(s("rect", { width: "100%", height: "100%", fill: "#ffffff" }), clone.firstChild.nextSibling);
      return new XMLSerializer().serializeToString(clone);
    }

    async function exportGraph(fmt) {
      const base = `lineage-${(rootNode.label || "graph").replace(/[^A-Za-z0-9._-]+/g, "_")}`;
      try {
        if (fmt === "svg") return download(`${base}.svg`, new Blob([standaloneSvg()], { type: "image/svg+xml" }));
        if (fmt === "png") {
          const url = URL.createObjectURL(new Blob([standaloneSvg()], { type: "image/svg+xml" }));
          const img = new Image();
          await new Promise((ok, no) => { img.onload = ok; img.onerror = () => no(new Error("the graph could not be drawn as an image")); img.src = url; });
          const canvas = h("canvas", { width: img.width * 2, height: img.height * 2 });
          const ctx = canvas.getContext("2d");
          ctx.scale(2, 2);
          ctx.drawImage(img, 0, 0);
          URL.revokeObjectURL(url);
          const blob = await new Promise((ok) => canvas.toBlob(ok, "image/png"));
          return download(`${base}.png`, blob);
        }
        const response = await request(`/api/v1/ui/export?format=${encodeURIComponent(fmt)}`, {
          method: "POST", type: "application/json", body: JSON.stringify({ ids: visibleIds() }), accept: "*/*",
        });
        const ext = { provn: "provn", json: "json", turtle: "ttl", xml: "provx", jsonld: "jsonld" }[fmt] || fmt;
        return download(`${base}.${ext}`, await response.blob());
      } catch (err) {
        fail(err);
      }
    }

    direction.addEventListener("change", () => { state.direction = direction.value; load().catch(fail); });
    depth.addEventListener("change", () => { state.depth = depth.value; load().catch(fail); });
    await load();
  }

  // ------------------------------------------------------------------ compare

  async function comparePage(root) {
    const p = params();
    const a = p.get("a"), b = p.get("b");
    setTitle("Compare model versions");
    root.append(h("h1", {}, "Compare two model versions"));
    const versions = (await api("/api/v1/model-versions?limit=1000")).items;
    const pick = (name, value, label) => h("label", {}, label,
      h("select", { name, id: `pick-${name}` }, h("option", { value: "" }, "choose…"),
        versions.map((v) => h("option", { value: v.id, selected: v.id === value }, v.label || short(v.id)))));
    root.append(h("form", { class: "toolbar", action: "/ui/compare" }, pick("a", a, "Version A"), pick("b", b, "Version B"),
      h("button", { type: "submit" }, "Compare")));
    if (!a || !b) {
      if (!versions.length) root.append(h("div", { class: "message", role: "status" }, "The store holds no model versions to compare."));
      return;
    }
    for (const one of [a, b]) {
      const found = await lookup(one);
      if (!found.node) return unknownId(root, one, found);
    }
    const diff = await api(`/api/v1/diff?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`);
    const label = (iri) => (versions.find((v) => v.id === iri) || {}).label || short(iri);
    const out = h("div", { id: "diff" });
    root.append(out);
    out.append(h("p", {}, h("strong", {}, "A: "), h("a", { href: link.lineage(a) }, label(a)), " · ",
      h("strong", {}, "B: "), h("a", { href: link.lineage(b) }, label(b)), " · ",
      diff.identical ? h("span", { class: "changed-no" }, "identical lineage") : h("span", { class: "changed-yes" }, "lineage differs")));
    if (diff.hyperparameter_changes && diff.hyperparameter_changes.length) {
      out.append(h("h2", {}, "Changed hyperparameters"),
        table(["hyperparameter", `A (${label(a)})`, `B (${label(b)})`], diff.hyperparameter_changes.map((c) =>
          [c.name, (c.a || []).join(", ") || "—", (c.b || []).join(", ") || "—"])));
    }
    if (diff.code_versions) {
      out.append(h("h2", {}, "Code versions"), codeVersions(diff.code_versions));
    }
    const names = { data: "Data", hyperparameters: "Hyperparameters", code: "Code and agents", executions: "Executions", models: "Upstream models" };
    for (const [key, title] of Object.entries(names)) {
      const part = diff[key];
      if (!part || !("common" in part)) continue;
      const list = (items) => items.length
        ? h("ul", { class: "plain" }, items.map((n) => h("li", {}, nodeAnchor(n), " ", h("span", { class: "badge" }, n.class || n.kind))))
        : h("p", {}, "none");
      out.append(h("section", { id: `diff-${key}` }, h("h2", {}, title, " ",
        part.changed ? h("span", { class: "changed-yes" }, "changed") : h("span", { class: "changed-no" }, "unchanged")),
      h("div", { class: "diff-cols" },
        h("div", { class: "only-a" }, h("h4", {}, `Only in A (${part.only_a.length})`), list(part.only_a)),
        h("div", {}, h("details", {}, h("summary", {}, `In both (${part.common.length})`), list(part.common))),
        h("div", { class: "only-b" }, h("h4", {}, `Only in B (${part.only_b.length})`), list(part.only_b)))));
    }
  }

  function codeVersions(value) {
    if (Array.isArray(value)) return h("ul", { class: "plain" }, value.map((v) => h("li", {}, typeof v === "object" ? JSON.stringify(v) : String(v))));
    if (value && typeof value === "object") {
      return h("table", {}, h("tbody", {}, Object.entries(value).map(([k, v]) =>
        h("tr", {}, h("td", {}, k), h("td", { class: "iri" }, typeof v === "object" ? JSON.stringify(v) : String(v))))));
    }
    return h("p", {}, String(value));
  }

  // ------------------------------------------------------------------ run

  function niceTicks(lo, hi, count) {
    if (lo === hi) { lo -= 1; hi += 1; }
    const step0 = (hi - lo) / count;
    const mag = 10 ** Math.floor(Math.log10(step0));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((x) => x >= step0) || mag * 10;
    const ticks = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
    return ticks;
  }

  function plot(name, points) {
    const W = 440, H = 250, L = 60, R = 16, T = 14, B = 40;
    const xs = points.map((p, i) => (typeof p.step === "number" ? p.step : i));
    const ys = points.map((p) => p.value);
    const x0 = Math.min(...xs), x1 = Math.max(...xs);
    let y0 = Math.min(...ys), y1 = Math.max(...ys);
    if (y0 === y1) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
    const sx = (x) => L + (x1 === x0 ? (W - L - R) / 2 : ((x - x0) / (x1 - x0)) * (W - L - R));
    const sy = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
    const svg = s("svg", { class: "plot", width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${name} by step, ${points.length} points, from ${fmtNumber(ys[0])} to ${fmtNumber(ys[ys.length - 1])}` });
    for (const t of niceTicks(y0, y1, 5)) {
      if (t < y0 || t > y1) continue;
      svg.append(s("line", { class: "grid", x1: L, x2: W - R, y1: sy(t), y2: sy(t) }),
        s("text", { x: L - 6, y: sy(t) + 4, "text-anchor": "end" }, fmtNumber(t)));
    }
    const xt = niceTicks(x0, x1, Math.min(6, Math.max(1, x1 - x0))).filter((t) => t >= x0 && t <= x1 && Number.isInteger(t));
    for (const t of xt) svg.append(s("text", { x: sx(t), y: H - B + 16, "text-anchor": "middle" }, String(t)));
    svg.append(
      s("line", { class: "axis", x1: L, x2: L, y1: T, y2: H - B }),
      s("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }),
      s("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle" }, "step"),
      s("polyline", { class: "curve", points: xs.map((x, i) => `${sx(x)},${sy(ys[i])}`).join(" ") }));
    xs.forEach((x, i) => svg.append(s("circle", { class: "pt", cx: sx(x), cy: sy(ys[i]), r: 3 },
      s("title", {}, `step ${x}: ${fmtNumber(ys[i])}`))));
    return h("figure", {}, h("figcaption", {}, name), svg);
  }

  function timeline(rows) {
    const timed = rows.filter((r) => r.startTime && r.endTime);
    if (!timed.length) return h("p", {}, "No execution of this run has start and end times.");
    const t0 = Math.min(...timed.map((r) => +new Date(r.startTime)));
    const t1 = Math.max(...timed.map((r) => +new Date(r.endTime)));
    const span = Math.max(1, t1 - t0);
    const LABEL = 300, W = 1000, ROW = 24, T = 26;
    const H = T + timed.length * ROW + 10;
    const sx = (t) => LABEL + ((t - t0) / span) * (W - LABEL - 120);
    const svg = s("svg", { class: "timeline", id: "timeline", width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `Timeline of ${timed.length} executions over ${fmtDuration(span / 1000)}` });
    for (const t of niceTicks(0, span / 1000, 6)) {
      if (t * 1000 > span) continue;
      svg.append(s("line", { x1: sx(t0 + t * 1000), x2: sx(t0 + t * 1000), y1: T - 6, y2: H - 6, stroke: "#dde0e4" }),
        s("text", { x: sx(t0 + t * 1000), y: T - 10, "text-anchor": "middle" }, `${+t.toPrecision(6)} s`));
    }
    timed.forEach((r, i) => {
      const y = T + i * ROW;
      const a = sx(+new Date(r.startTime)), b = sx(+new Date(r.endTime));
      svg.append(
        s("text", { x: 6 + r.depth * 14, y: y + 15 }, truncate(r.label || short(r.id), 40 - r.depth * 2)),
        s("rect", { class: `bar${r.status === "failed" ? " failed" : ""}`, x: a, y: y + 3, width: Math.max(2, b - a), height: ROW - 8 },
          s("title", {}, `${r.label || r.id} (${r.class || r.kind}): ${fmtDuration(r.duration)}`)),
        s("text", { x: Math.max(2, b) + 6, y: y + 15 }, fmtDuration(r.duration)));
    });
    return svg;
  }

  async function runPage(root) {
    const id = params().get("id");
    if (!id) return missingParam(root, "a run id");
    const found = await lookup(id);
    if (!found.node && !found.bundle) return unknownId(root, id, found);
    const data = await api(`/api/v1/ui/run?id=${encodeURIComponent(id)}`);
    const run = data.run;
    const title = run ? run.label || short(run.id) : short(data.bundle);
    setTitle(`Run ${title}`);
    root.append(h("h1", {}, "Run ", title), h("p", { class: "sub" }, "bundle ", h("span", { class: "iri" }, data.bundle)));
    if (run) {
      root.append(h("div", { class: "cards" },
        h("div", { class: "card" }, "status", h("span", { class: "n" }, statusText(run.status))),
        h("div", { class: "card" }, "started", h("span", { class: "n", style: "font-size:1rem" }, fmtTime(run.startTime))),
        h("div", { class: "card" }, "duration", h("span", { class: "n" }, fmtDuration(duration(run)))),
        h("div", { class: "card" }, "executions", h("span", { class: "n" }, String(data.timeline.length)))));
      root.append(h("p", { class: "toolbar" }, h("a", { href: link.lineage(run.id) }, "Lineage of this run"),
        h("button", { type: "button", class: "secondary", id: "export-run", onclick: async () => {
          try {
            const response = await request(`/api/v1/bundles/export?id=${encodeURIComponent(data.bundle)}&format=provn`, { accept: "*/*" });
            download("run.provn", await response.blob());
          } catch (err) { root.append(errorBox(err)); }
        } }, "Download as PROV-N")));
    }
    root.append(h("h2", {}, "Execution timeline"), h("div", { class: "results-wrap" }, timeline(data.timeline)));
    root.append(h("h2", {}, "Metrics by step"));
    const names = Object.keys(data.metrics);
    if (!names.length) root.append(h("p", {}, "This run recorded no numeric metrics."));
    else root.append(h("div", { class: "plots", id: "plots" }, names.map((n) => plot(n, data.metrics[n]))));
    root.append(h("h2", {}, "Executions"), table(["execution", "class", "started", "duration", "status"], data.timeline.map((r) =>
      [h("a", { href: link.lineage(r.id), style: `padding-left:${r.depth}em` }, r.label || short(r.id)), r.class || r.kind, fmtTime(r.startTime), fmtDuration(r.duration), statusText(r.status)]), { numeric: [3] }));
  }

  // ------------------------------------------------------------------ SPARQL console

  async function sparqlPage(root) {
    setTitle("SPARQL console");
    const examples = await api("/api/v1/ui/examples");
    root.append(h("h1", {}, "SPARQL console"),
      h("p", { class: "sub" }, "Read-only SPARQL 1.1 over every bundle (the default graph is their union). Ctrl+Enter runs the query."));
    const editor = h("textarea", { id: "sparql-query", spellcheck: "false", "aria-label": "SPARQL query" });
    const picker = h("select", { id: "example" }, h("option", { value: "" }, "choose an example…"),
      examples.map((e, i) => h("option", { value: String(i) }, e.question)));
    const out = h("div", { id: "sparql-results", "aria-live": "polite" });
    const runButton = h("button", { type: "button", id: "run-query" }, "Run query");
    root.append(h("div", { class: "toolbar" }, h("label", {}, "Example", picker), runButton), editor, out);
    picker.addEventListener("change", () => {
      if (picker.value !== "") editor.value = examples[+picker.value].query;
    });
    editor.value = examples.length ? examples[0].query : "SELECT * WHERE { ?s ?p ?o } LIMIT 20";
    if (examples.length) picker.value = "0";

    async function run() {
      runButton.disabled = true;
      clear(out).append(h("p", { role: "status" }, "Running…"));
      const started = performance.now();
      try {
        const response = await request("/sparql", {
          method: "POST", type: "application/x-www-form-urlencoded",
          body: new URLSearchParams({ query: editor.value }).toString(),
          accept: "application/sparql-results+json, text/turtle;q=0.8",
        });
        const ms = Math.round(performance.now() - started);
        const type = response.headers.get("content-type") || "";
        clear(out);
        if (type.includes("json")) {
          const data = await response.json();
          if ("boolean" in data) {
            out.append(h("p", { role: "status" }, `ASK answered ${data.boolean} in ${ms} ms.`));
          } else {
            const vars = data.head.vars;
            const rows = data.results.bindings;
            out.append(h("p", { role: "status", id: "row-count" }, `${rows.length} row${rows.length === 1 ? "" : "s"} in ${ms} ms.`),
              h("div", { class: "results-wrap" }, h("table", { class: "results", id: "results-table" },
                h("thead", {}, h("tr", {}, vars.map((v) => h("th", { scope: "col" }, v)))),
                h("tbody", {}, rows.map((row) => h("tr", {}, vars.map((v) => h("td", {}, term(row[v])))))))));
          }
        } else {
          out.append(h("p", { role: "status" }, `Graph answer in ${ms} ms.`), h("pre", { class: "cmd" }, await response.text()));
        }
      } catch (err) {
        clear(out).append(errorBox(err));
      } finally {
        runButton.disabled = false;
      }
    }
    function term(t) {
      if (!t) return "";
      if (t.type === "uri") return h("a", { href: link.node(t.value), class: "iri" }, short(t.value));
      return t.value;
    }
    runButton.addEventListener("click", run);
    editor.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); run(); }
    });
  }

  // ------------------------------------------------------------------ start

  const PAGES = {
    "/ui/": homePage,
    "/ui/search": searchPage,
    "/ui/model": modelPage,
    "/ui/node": nodePage,
    "/ui/lineage": lineagePage,
    "/ui/compare": comparePage,
    "/ui/run": runPage,
    "/ui/sparql": sparqlPage,
  };

  function tokenForm() {
    const form = document.getElementById("token-form");
    const input = document.getElementById("token-input");
    input.value = sessionStorage.getItem(TOKEN_KEY) || "";
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      if (input.value.trim()) sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      else sessionStorage.removeItem(TOKEN_KEY);
      window.location.reload();
    });
    document.getElementById("token-clear").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      window.location.reload();
    });
  }

  async function start() {
    tokenForm();
    const root = clear(main());
    const page = PAGES[window.location.pathname] || PAGES[window.location.pathname.replace(/\/$/, "")];
    document.body.dataset.page = (window.location.pathname.split("/")[2] || "home");
    try {
      if (!page) {
        root.append(h("h1", {}, "No such page"), h("p", {}, h("a", { href: "/ui/" }, "Go home")));
        return;
      }
      await page(root);
    } catch (err) {
      root.append(errorBox(err));
    } finally {
      document.body.dataset.ready = "true";
    }
  }

  document.addEventListener("DOMContentLoaded", start);
})();

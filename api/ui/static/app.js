// The client dashboard: one vanilla ES module, no dependencies, no build step.
// Every data call is this browser calling the REST API with the client's key (kept in sessionStorage only).
// API data is only ever put in the page as text (textContent / attributes), never parsed as HTML.

const KEY = "orch.apiKey";
const POLL_MS = 5000;
const FINAL = new Set(["SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED", "TIMED_OUT"]);
const STATUSES = ["PENDING", "SCHEDULED", "LAUNCHING", "RUNNING", "CANCELLING", "SUCCEEDED", "FAILED",
  "CANCELLED", "EXPIRED", "TIMED_OUT"];

const main = document.getElementById("main");
const live = document.getElementById("live");
let timers = [];      // polling timers of the current page, cleared on navigation
let blobUrls = [];    // chart object URLs of the current page, revoked on navigation
let generation = 0;   // bumps on navigation: late answers for a page the user left are dropped

// ---------------------------------------------------------------- DOM helpers (text only)
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = String(v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function say(text) {
  live.textContent = text;
}

function fmtTime(v) {
  if (!v) return "—";
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) return String(v);
  return d.toISOString().replace(/\.\d+Z$/, "Z").replace("T", " ");
}

function fmtNum(v, digits = 2) {
  if (v === null || v === undefined || v === "") return "—";
  if (typeof v !== "number") return String(v);
  if (Object.is(v, -0)) return "0";
  if (Number.isInteger(v)) return v.toLocaleString("en");
  const a = Math.abs(v);
  if (a !== 0 && (a < 0.01 || a >= 1e9)) return v.toPrecision(3);
  // no "-0": a value that rounds to zero is shown as 0
  return v.toLocaleString("en", { maximumFractionDigits: digits }).replace(/^-(0(\.0*)?)$/, "$1");
}

function fmtAny(v) {
  if (v === null || v === undefined || v === "") return "—";
  if (typeof v === "number") return fmtNum(v);
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v === "string" && /^\d{4}-\d\d-\d\dT\d\d:\d\d/.test(v)) return fmtTime(v);
  if (Array.isArray(v)) return fmtList(v);
  if (typeof v === "object") {
    // flat: "p50 (s) 1800, p90 (s) 2700"; nested: "series: start …; values 96 values, 180–420"
    const flat = Object.values(v).every((x) => x === null || typeof x !== "object");
    return Object.entries(v).map(([k, x]) => `${humanKey(k)}${flat ? " " : ": "}${fmtAny(x)}`).join(flat ? ", " : "; ") || "—";
  }
  return String(v);
}

// A list in one cell: a long series as its size and range, a short list in full
function fmtList(v) {
  if (!v.length) return "none";
  if (v.every((x) => typeof x === "number")) {
    if (v.length <= 6) return v.map((x) => fmtNum(x)).join(", ");
    const lo = v.reduce((a, b) => Math.min(a, b)), hi = v.reduce((a, b) => Math.max(a, b));
    return `${v.length} values, ${fmtNum(lo)}–${fmtNum(hi)}`;
  }
  if (v.length > 6) return `${v.length} items`;
  return v.map(fmtAny).join(", ");
}

// "emissions_chosen_g" -> "emissions chosen (g)", "expected_saving_pct" -> "expected saving (%)"
function humanKey(k) {
  return String(k)
    .replace(/gco2e/g, "gCO2e")
    .replace(/_pct$/, " (%)").replace(/_kwh$/, " (kWh)").replace(/_g$/, " (g)").replace(/_sec$/, " (s)")
    .replace(/_/g, " ");
}

function statusBadge(s) {
  return el("span", { class: `status st-${s}`, text: s });
}

function runLink(id) {
  return el("a", { href: `#/run/${encodeURIComponent(id)}`, class: "id", text: id });
}

function facts(pairs) {
  const dl = el("dl", { class: "facts" });
  for (const [k, v] of pairs) {
    dl.append(el("dt", { text: k }), el("dd", {}, v instanceof Node ? v : fmtAny(v)));
  }
  return dl;
}

// A table from a list of column specs {label, get(row) -> Node|string, num}
const MAX_ROWS = 100;

function table(caption, columns, allRows, footRow, maxRows = MAX_ROWS) {
  const rows = allRows.slice(0, maxRows);  // a long list (a month of candidates) stays readable
  if (allRows.length > rows.length) caption = `${caption} (the first ${rows.length} of ${allRows.length})`;
  const t = el("table", {},
    el("caption", { text: caption }),
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col", class: c.num ? "num" : null, text: c.label })))),
  );
  const body = el("tbody");
  for (const r of rows) {
    body.append(el("tr", {}, columns.map((c, i) => {
      const v = c.get(r);
      const cell = el(i === 0 ? "th" : "td", { scope: i === 0 ? "row" : null, class: c.num ? "num" : (c.cls || null) });
      cell.append(v instanceof Node ? v : document.createTextNode(v === null || v === undefined ? "—" : String(v)));
      return cell;
    })));
  }
  t.append(body);
  if (footRow) {
    t.append(el("tfoot", {}, el("tr", {}, columns.map((c, i) => {
      const v = c.get(footRow);
      return el(i === 0 ? "th" : "td", { scope: i === 0 ? "row" : null, class: c.num ? "num" : null },
        v instanceof Node ? v : String(v ?? "—"));
    }))));
  }
  // a scrollable region a keyboard can reach and scroll, named after its table
  return el("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption || "table" }, t);
}

// A table whose columns are the union of the rows' keys: for answers whose fields may grow.
function genericTable(caption, rows, footRow) {
  const keys = [];
  for (const r of [...rows, ...(footRow ? [footRow] : [])]) {
    for (const k of Object.keys(r)) if (!keys.includes(k)) keys.push(k);
  }
  const cols = keys.map((k) => ({
    label: humanKey(k),
    num: rows.some((r) => typeof r[k] === "number"),
    // short values (months, regions) stay whole; long ones (a series' summary) get room to wrap
    cls: rows.every((r) => fmtAny(r[k]).length <= 24) ? "nowrap" : rows.some((r) => fmtAny(r[k]).length > 60) ? "wide" : null,
    get: (r) => fmtAny(r[k]),
  }));
  return table(caption, cols, rows, footRow);
}

// Any JSON value as nested facts / tables / text.
function genericValue(v, caption = "") {
  if (Array.isArray(v)) {
    if (v.length && v.every((x) => x && typeof x === "object" && !Array.isArray(x))) return genericTable(caption, v);
    if (!v.length || v.length > 20 || v.every((x) => typeof x !== "object")) return document.createTextNode(fmtList(v));
    return el("ul", {}, v.map((x) => el("li", {}, genericValue(x))));
  }
  if (v && typeof v === "object") {
    return facts(Object.entries(v).map(([k, x]) => [humanKey(k),
      x && typeof x === "object" ? genericValue(x, humanKey(k)) : fmtAny(x)]));
  }
  return document.createTextNode(fmtAny(v));
}

function errorBox(err, what) {
  const box = el("div", { class: "error", role: "alert" },
    el("strong", { text: `${what ? what + ": " : ""}${err.status ? err.status + " " : ""}${err.title || "Error"}` }),
    err.detail ? el("p", { text: err.detail }) : null);
  if (Array.isArray(err.errors) && err.errors.length) {
    box.append(el("ul", {}, err.errors.map((e) => el("li", { text: `${e.path}: ${e.message}` }))));
  }
  return box;
}

// ---------------------------------------------------------------- API calls
class ApiError extends Error {
  constructor(status, body) {
    super(body.detail || body.title || `HTTP ${status}`);
    Object.assign(this, { status, title: body.title || `HTTP ${status}`, detail: body.detail || "", errors: body.errors || [] });
  }
}

function key() {
  return sessionStorage.getItem(KEY);
}

async function call(path, { method = "GET", body, accept = "application/json", raw = false } = {}) {
  const headers = { "X-API-Key": key() || "", Accept: accept };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let r;
  try {
    r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
  } catch (e) {
    throw new ApiError(0, { title: "The API is unreachable", detail: String(e.message || e) });
  }
  if (!r.ok) {
    let problem = {};
    try { problem = await r.json(); } catch { problem = { title: r.statusText }; }
    if (r.status === 401 && path !== "/v1/runs?limit=1") { logout("Your key was refused (401): log in again."); }
    throw new ApiError(r.status, problem);
  }
  if (raw) return r;
  return r.status === 204 ? null : r.json();
}

function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

// An SVG chart fetched with the key, shown as an <img> (scripts in an image never run).
async function chartInto(figure, path, opts, alt) {
  try {
    const r = await call(path, { ...opts, accept: "image/svg+xml", raw: true });
    const blob = await r.blob();
    const url = URL.createObjectURL(new Blob([blob], { type: "image/svg+xml" }));
    blobUrls.push(url);
    figure.replaceChildren(el("img", { src: url, alt }));
    return true;
  } catch (e) {
    figure.replaceChildren(el("p", { class: "note", text: `Chart unavailable: ${e.status ? e.status + " " : ""}${e.detail || e.title || e.message}` }));
    return false;
  }
}

// Names for ids: templates and recurring jobs, fetched once per page.
async function names() {
  const [t, rj] = await Promise.all([
    call("/v1/job-templates?limit=200").catch(() => ({ items: [] })),
    call("/v1/recurring-jobs?limit=200").catch(() => ({ items: [] })),
  ]);
  return {
    templates: t.items,
    recurring: rj.items,
    template: Object.fromEntries(t.items.map((x) => [x.id, x.name])),
    rec: Object.fromEntries(rj.items.map((x) => [x.id, x.name || x.summary || x.id])),
  };
}

// ---------------------------------------------------------------- navigation
function every(ms, fn) {
  const mine = generation;
  const tick = async () => {
    if (mine !== generation) return;
    if (!document.hidden) { try { await fn(); } catch { /* shown by the next full load */ } }
    if (mine === generation) timers.push(setTimeout(tick, ms));
  };
  timers.push(setTimeout(tick, ms));
}

function page(title, ...children) {
  document.title = `${title} · Carbon-aware orchestrator`;
  main.replaceChildren(el("h1", { text: title }), ...children);
}

function logout(message) {
  sessionStorage.removeItem(KEY);
  location.hash = "#/login";
  route().then(() => { if (message) say(message); });
}

async function route() {
  generation += 1;
  timers.forEach(clearTimeout);
  timers = [];
  blobUrls.forEach((u) => URL.revokeObjectURL(u));
  blobUrls = [];
  const hash = location.hash.replace(/^#\/?/, "");
  const [pathPart, query = ""] = hash.split("?");
  const parts = pathPart.split("/").map((x) => { try { return decodeURIComponent(x); } catch { return x; } });
  const params = new URLSearchParams(query);
  const nav = document.getElementById("nav");
  if (!key()) {
    nav.hidden = true;
    return loginPage();
  }
  nav.hidden = false;
  const section = { run: "runs", runs: "runs", recurring: "recurring", report: "report", preview: "preview" }[parts[0]] || "runs";
  for (const a of nav.querySelectorAll("a")) {
    if (a.dataset.route === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const mine = generation;
  // the previous page's buttons must not stay clickable while this one loads
  main.replaceChildren(el("p", { class: "note", "aria-busy": "true", text: "Loading…" }));
  try {
    if (parts[0] === "run" && parts[1]) await runPage(parts[1], mine);
    else if (parts[0] === "recurring" && parts[1]) await recurringPage(parts[1], mine);
    else if (parts[0] === "recurring") await recurringList(mine);
    else if (parts[0] === "report") await reportPage(params, mine);
    else if (parts[0] === "preview") await previewPage(mine);
    else await runsPage(params, mine);
  } catch (e) {
    if (mine === generation) page("Error", errorBox(e));
  }
}

// ---------------------------------------------------------------- login
function loginPage() {
  const input = el("input", { id: "api-key", name: "api-key", type: "password", autocomplete: "off", required: true, spellcheck: "false" });
  const msg = el("div");
  const form = el("form", { class: "stack login", novalidate: true },
    el("div", { class: "field" },
      el("label", { for: "api-key", text: "API key" }),
      input,
      el("span", { class: "hint", id: "api-key-hint", text: "Your client key (X-API-Key). It stays in this tab's session storage and is forgotten when the tab closes." })),
    el("div", {}, el("button", { type: "submit", text: "Log in" })),
    msg);
  input.setAttribute("aria-describedby", "api-key-hint");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const k = input.value.trim();
    if (!k) { input.setAttribute("aria-invalid", "true"); msg.replaceChildren(el("p", { class: "error", role: "alert", text: "Enter your API key." })); return; }
    sessionStorage.setItem(KEY, k);
    try {
      await call("/v1/runs?limit=1");
    } catch (e) {
      sessionStorage.removeItem(KEY);
      input.setAttribute("aria-invalid", "true");
      msg.replaceChildren(errorBox(e, e.status === 401 ? "This key was refused" : "Could not log in"));
      return;
    }
    // a deep link opened before logging in (#/run/...) is where the user goes next
    const target = location.hash && location.hash !== "#/login" ? location.hash : "#/runs";
    if (location.hash === target) route(); else location.hash = target;
  });
  page("Log in", form);
  input.focus();
}

// ---------------------------------------------------------------- runs
async function runsPage(params, mine) {
  const filters = { status: params.get("status") || "", job_template_id: params.get("template") || "",
    recurring_job_id: params.get("recurring") || "", region: params.get("region") || "" };
  const n = await names();
  if (mine !== generation) return;
  const opt = (value, label, selected) => el("option", { value, selected: selected || null, text: label });
  const field = (id, label, control) => el("div", { class: "field" }, el("label", { for: id, text: label }), control);
  const status = el("select", { id: "f-status", name: "status" }, opt("", "any", !filters.status),
    STATUSES.map((s) => opt(s, s, s === filters.status)));
  const tpl = el("select", { id: "f-template", name: "template" }, opt("", "any", !filters.job_template_id),
    n.templates.map((t) => opt(t.id, `${t.name} (${t.id})`, t.id === filters.job_template_id)));
  const rec = el("select", { id: "f-recurring", name: "recurring" }, opt("", "any", !filters.recurring_job_id),
    n.recurring.map((r) => opt(r.id, `${n.rec[r.id]} (${r.id})`, r.id === filters.recurring_job_id)));
  const region = el("input", { id: "f-region", name: "region", value: filters.region, placeholder: "e.g. eu-west-3", autocomplete: "off" });
  const form = el("form", { class: "filters", role: "search", "aria-label": "Filter runs" },
    field("f-status", "Status", status), field("f-template", "Job template", tpl),
    field("f-recurring", "Recurring job", rec), field("f-region", "Region", region),
    el("button", { type: "submit", text: "Apply filters" }));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    location.hash = `#/runs${qs({ status: status.value, template: tpl.value, recurring: rec.value, region: region.value.trim() })}`;
  });
  const holder = el("div");
  const more = el("button", { type: "button", class: "secondary", hidden: true, text: "Load more" });
  page("Runs", form, holder, el("div", { class: "actions" }, more),
    el("p", { class: "note", text: `Statuses refresh every ${POLL_MS / 1000} s while this tab is visible.` }));

  let items = [];
  let cursor = null;
  const apiQuery = (c) => `/v1/runs${qs({ limit: 50, status: filters.status, job_template_id: filters.job_template_id,
    recurring_job_id: filters.recurring_job_id, cursor: c })}`;
  // The API has no region filter: the region filter narrows the pages loaded so far.
  const shown = () => items.filter((r) => !filters.region || (r.region || "") === filters.region);
  const render = () => {
    const rows = shown();
    const cols = [
      { label: "Run", get: (r) => runLink(r.run_id) },
      { label: "Status", get: (r) => statusBadge(r.status) },
      { label: "Template", get: (r) => n.template[r.job_template_id] || r.job_template_id },
      { label: "Recurring job", get: (r) => (r.recurring_job_id ? el("a", { href: `#/recurring/${encodeURIComponent(r.recurring_job_id)}`, text: n.rec[r.recurring_job_id] || r.recurring_job_id }) : "—") },
      { label: "Region", cls: "nowrap", get: (r) => r.region || "—" },
      { label: "Planned start (UTC)", get: (r) => fmtTime(r.planned_start) },
      { label: "Finished (UTC)", get: (r) => fmtTime(r.finished_at) },
      { label: "Saving", num: true, get: (r) => (r.carbon.saved_pct ?? r.carbon.expected_saving_pct) == null ? "—" : `${fmtNum(r.carbon.saved_pct ?? r.carbon.expected_saving_pct, 1)} %` },
    ];
    const caption = `${rows.length} run${rows.length === 1 ? "" : "s"}${cursor ? " (more to load)" : ""}, newest first`;
    holder.replaceChildren(rows.length ? table(caption, cols, rows) : el("p", { class: "note", text: "No runs match these filters." }));
    more.hidden = !cursor;
  };
  const first = await call(apiQuery(null));
  if (mine !== generation) return;
  items = first.items;
  cursor = first.next_cursor;
  render();
  more.addEventListener("click", async () => {
    more.disabled = true;
    try {
      const p = await call(apiQuery(cursor));
      items = items.concat(p.items);
      cursor = p.next_cursor;
      render();
      say(`Loaded ${p.items.length} more runs.`);
    } catch (e) { holder.append(errorBox(e)); } finally { more.disabled = false; }
  });
  // live status: re-read the first page (new runs appear on top) and the other unfinished runs shown;
  // announce what changed
  every(POLL_MS, async () => {
    const head = await call(apiQuery(null));
    const onHead = new Set(head.items.map((r) => r.run_id));
    const open = items.filter((r) => !FINAL.has(r.status) && !onHead.has(r.run_id)).slice(0, 20);
    const fresh = await Promise.all(open.map((r) => call(`/v1/runs/${encodeURIComponent(r.run_id)}`).catch(() => null)));
    if (mine !== generation) return;
    const changed = [];
    const known = new Set(items.map((r) => r.run_id));
    const added = head.items.filter((r) => !known.has(r.run_id));
    for (const f of [...head.items, ...fresh]) {
      if (!f) continue;
      const i = items.findIndex((r) => r.run_id === f.run_id);
      if (i >= 0 && items[i].status !== f.status) changed.push(`${f.run_id} is now ${f.status}`);
      if (i >= 0) items[i] = f;
    }
    if (added.length) {
      items = added.concat(items);
      changed.unshift(`${added.length} new run${added.length === 1 ? "" : "s"}`);
    }
    if (changed.length) { render(); say(changed.join("; ")); }
  });
}

// ---------------------------------------------------------------- one run
async function runPage(id, mine) {
  let run;
  try {
    run = await call(`/v1/runs/${encodeURIComponent(id)}`);
  } catch (e) {
    if (mine === generation) page(`Run ${id}`, errorBox(e), el("p", {}, el("a", { href: "#/runs", text: "Back to runs" })));
    return;
  }
  if (mine !== generation) return;
  const n = await names();
  if (mine !== generation) return;
  const statusLine = el("p", {});
  const summary = el("div");
  const carbon = el("div");
  const actions = el("div", { class: "actions" });
  const reason = el("input", { id: "cancel-reason", name: "reason", maxlength: 500, autocomplete: "off" });
  const cancelBtn = el("button", { type: "button", class: "danger", text: "Cancel run" });
  const cancelMsg = el("div");
  const cancelDone = el("p", { class: "note" });
  actions.append(el("div", { class: "field" }, el("label", { for: "cancel-reason", text: "Reason for cancelling (optional)" }), reason), cancelBtn);
  const plan = el("div");
  const figure = el("figure", { class: "chart" }, el("p", { class: "note", text: "Loading the chart…" }));
  const candidates = el("div");
  const audit = el("div", { id: "audit" }, el("p", { class: "note", text: "Loading the audit record…" }));
  const logs = el("pre", { class: "log", tabindex: "0", "aria-label": "Log tail" });
  const logsNote = el("p", { class: "note" });
  const refreshLogs = el("button", { type: "button", class: "secondary", text: "Refresh log" });

  const render = () => {
    statusLine.replaceChildren("Status: ", statusBadge(run.status), run.status_reason ? ` — ${run.status_reason}` : "");
    summary.replaceChildren(facts([
      ["Run", el("span", { class: "id", text: run.run_id })],
      ["Job", el("span", { class: "id", text: run.job_id })],
      ["Template", `${n.template[run.job_template_id] || "?"} (${run.job_template_id})`],
      ["Recurring job", run.recurring_job_id ? el("a", { href: `#/recurring/${encodeURIComponent(run.recurring_job_id)}`, text: n.rec[run.recurring_job_id] || run.recurring_job_id }) : "—"],
      ["Fleet template", run.fleet_template_id],
      ["Region", run.region || "—"],
      ["Capacity", run.capacity || "—"],
      ["Planned start (UTC)", fmtTime(run.planned_start)],
      ["Started (UTC)", fmtTime(run.started_at)],
      ["Finished (UTC)", fmtTime(run.finished_at)],
      ["Attempts", run.attempts],
      ["Exit code", run.exit_code ?? "—"],
      ["Runtime", run.runtime_sec == null ? "—" : `${fmtNum(run.runtime_sec, 0)} s`],
    ]));
    carbon.replaceChildren(facts(Object.entries(run.carbon).map(([k, v]) => [humanKey(k), fmtAny(v)])));
    const final = FINAL.has(run.status) || run.status === "CANCELLING";
    cancelBtn.disabled = final;
    reason.disabled = final;
    actions.hidden = final;
    cancelDone.textContent = final ? `Nothing to cancel: the run is ${run.status}.` : "";
    const p = run.plan || {};
    plan.replaceChildren(
      p.rationale ? el("p", { class: "rationale", text: p.rationale }) : el("p", { class: "note", text: "Not planned yet." }),
      run.plan ? facts(Object.entries(p).filter(([k]) => k !== "rationale").map(([k, v]) => [humanKey(k), fmtAny(v)])) : "");
  };
  page(`Run ${run.run_id}`, statusLine,
    el("div", { class: "cols" }, el("section", { "aria-labelledby": "h-sum" }, el("h2", { id: "h-sum", text: "Summary" }), summary),
      el("section", { "aria-labelledby": "h-carbon" }, el("h2", { id: "h-carbon", text: "Carbon" }), carbon)),
    el("section", { "aria-labelledby": "h-cancel" }, el("h2", { id: "h-cancel", text: "Cancel" }), actions, cancelDone, cancelMsg),
    el("section", { "aria-labelledby": "h-plan" }, el("h2", { id: "h-plan", text: "Plan and rationale" }), plan, figure),
    el("section", { "aria-labelledby": "h-cand" }, el("h2", { id: "h-cand", text: "Candidates" }), candidates),
    el("section", { "aria-labelledby": "h-audit" }, el("h2", { id: "h-audit", text: "Audit record" }), audit),
    el("section", { "aria-labelledby": "h-logs" }, el("h2", { id: "h-logs", text: "Log tail" }), el("div", { class: "actions" }, refreshLogs), logsNote, logs));
  render();

  cancelBtn.addEventListener("click", async () => {
    cancelBtn.disabled = true;
    try {
      run = await call(`/v1/runs/${encodeURIComponent(run.run_id)}/cancel`, { method: "POST", body: reason.value.trim() ? { reason: reason.value.trim() } : {} });
      render();
      cancelMsg.replaceChildren();
      say(`Cancel requested: ${run.run_id} is ${run.status}.`);
      loadLogs();
    } catch (e) {
      cancelMsg.replaceChildren(errorBox(e, "Cancel refused"));
      cancelBtn.disabled = FINAL.has(run.status);
    }
  });

  const loadLogs = async () => {
    try {
      const l = await call(`/v1/runs/${encodeURIComponent(run.run_id)}/logs?tail_bytes=16384`);
      logs.textContent = l.text || "(empty)";
      logsNote.textContent = `Attempt ${l.attempt}, last 16 KiB.`;
    } catch (e) {
      logs.textContent = "";
      logsNote.textContent = `No log yet: ${e.status || ""} ${e.detail || e.title}`;
    }
  };
  refreshLogs.addEventListener("click", loadLogs);
  loadLogs();

  // live status while the run is unfinished
  every(POLL_MS, async () => {
    if (FINAL.has(run.status)) return;
    const fresh = await call(`/v1/runs/${encodeURIComponent(run.run_id)}`);
    if (mine !== generation) return;
    if (fresh.status !== run.status) { say(`${fresh.run_id} is now ${fresh.status}`); loadLogs(); }
    run = fresh;
    render();
  });

  // the audit record (GET /v1/runs/{id}/plan): what the planner saw and chose
  let auditCandidates = null;
  try {
    const a = await call(`/v1/runs/${encodeURIComponent(run.run_id)}/plan`);
    if (mine !== generation) return;
    const list = Array.isArray(a.candidates) ? a.candidates : null;
    auditCandidates = list;
    const rest = { ...a };
    delete rest.candidates;
    delete rest.rationale;
    audit.replaceChildren(a.rationale ? el("p", { class: "rationale", text: a.rationale }) : "", genericValue(rest, "Audit record"));
  } catch (e) {
    if (mine !== generation) return;
    // 409: the run has none (not planned yet, or planned before audit records); 404: an API without them
    const none = e.status === 404 || e.status === 409;
    audit.replaceChildren(el("p", { class: "note", text: none ? "No audit record for this run." : `Audit record unavailable: ${e.status} ${e.detail || e.title}` }),
      e.status === 409 && e.detail ? el("p", { class: "note", text: e.detail }) : "");
  }

  // the chart and, without an audit record, the candidates: the job's window re-scored with today's forecast
  let job = null;
  try { job = await call(`/v1/jobs/${encodeURIComponent(run.job_id)}`); } catch { job = null; }
  if (mine !== generation) return;
  const body = job && job.earliest_start && job.latest_finish ? {
    job_template_id: run.job_template_id, fleet_template_id: run.fleet_template_id,
    earliest_start: job.earliest_start, latest_finish: job.latest_finish, risk_mode: job.risk_mode,
    weights: job.weights, ...(job.regions ? { regions: job.regions } : {}),
  } : null;
  if (auditCandidates) {
    candidates.replaceChildren(candidateTable("Candidates the planner scored (audit record)", auditCandidates));
  }
  if (!body) {
    figure.replaceChildren(el("p", { class: "note", text: "No chart: this job has no window to chart." }));
    if (!auditCandidates) {
      candidates.replaceChildren(el("p", { class: "note", text: run.plan ? "Only the chosen start is recorded (see the plan above)." : "Not planned yet." }));
    }
    return;
  }
  const ok = await chartInto(figure, "/v1/schedules/preview?format=svg", { method: "POST", body }, `Carbon forecast and candidate scores for the window of job ${run.job_id}`);
  if (mine !== generation) return;
  if (ok) figure.append(el("figcaption", { text: "The job's window re-scored with the current forecast (POST /v1/schedules/preview)." }));
  if (!auditCandidates) {
    try {
      const pv = await call("/v1/schedules/preview", { method: "POST", body });
      if (mine !== generation) return;
      candidates.replaceChildren(candidateTable("Best candidates for this window, re-scored now with the current forecast", pv.candidates));
    } catch (e) {
      candidates.replaceChildren(el("p", { class: "note", text: `Only the chosen start is recorded; re-scoring the window failed: ${e.status} ${e.detail || e.title}` }));
    }
  }

}

function candidateTable(caption, list) {
  const pct = (v) => (v == null ? "—" : `${fmtNum(v, 1)} %`);
  const known = list.length && "proposed_start" in list[0];
  if (!known) return genericTable(list.length > 20 ? `${caption} (the first 20 of ${list.length})` : caption, list.slice(0, 20));
  return table(caption, [
    { label: "Start (UTC)", get: (c) => fmtTime(c.proposed_start) },
    { label: "Region", cls: "nowrap", get: (c) => c.region || "—" },
    { label: "Objective", num: true, get: (c) => fmtNum(c.objective, 4) },
    { label: "Carbon score", num: true, get: (c) => fmtNum(c.scores?.carbon, 3) },
    { label: "Risk score", num: true, get: (c) => fmtNum(c.scores?.risk, 3) },
    { label: "Slack score", num: true, get: (c) => fmtNum(c.scores?.slack, 3) },
    { label: "Saving vs earliest", num: true, get: (c) => pct(c.saving_vs_earliest_pct) },
    { label: "± (1σ)", num: true, get: (c) => (c.saving_sigma_pct == null ? "—" : `${fmtNum(c.saving_sigma_pct, 1)} pts`) },
    { label: "P(saving)", num: true, get: (c) => (c.prob_saving == null ? "—" : fmtNum(c.prob_saving, 2)) },
  ], list, null, 20);
}

// ---------------------------------------------------------------- recurring jobs
async function recurringList(mine) {
  const [list, n] = await Promise.all([call("/v1/recurring-jobs?limit=200"), names()]);
  if (mine !== generation) return;
  page("Recurring jobs", list.items.length ? table(`${list.items.length} recurring jobs`, [
    { label: "Recurring job", get: (r) => el("a", { href: `#/recurring/${encodeURIComponent(r.id)}`, text: r.name || r.id }) },
    { label: "Id", cls: "id", get: (r) => r.id },
    { label: "When", get: (r) => r.summary || r.cron || r.interval },
    { label: "Template", get: (r) => n.template[r.job_template_id] || r.job_template_id },
    { label: "Status", get: (r) => statusBadge(r.status) },
  ], list.items) : el("p", { class: "note", text: "No recurring jobs yet (POST /v1/recurring-jobs or orch recurring create)." }));
}

async function recurringPage(id, mine) {
  let rj;
  const load = async () => call(`/v1/recurring-jobs/${encodeURIComponent(id)}?next=5`);
  try {
    rj = await load();
  } catch (e) {
    if (mine === generation) page(`Recurring job ${id}`, errorBox(e), el("p", {}, el("a", { href: "#/recurring", text: "Back to recurring jobs" })));
    return;
  }
  if (mine !== generation) return;
  const info = el("div");
  const next = el("div");
  const nextPlan = el("div");
  const msg = el("div");
  const pause = el("button", { type: "button", class: "secondary", text: "Pause" });
  const resume = el("button", { type: "button", class: "secondary", text: "Resume" });
  const trigger = el("button", { type: "button", text: "Trigger a firing now" });
  const render = () => {
    info.replaceChildren(facts([
      ["Id", el("span", { class: "id", text: rj.id })],
      ["When", rj.summary || "—"],
      ["Status", statusBadge(rj.status)],
      ["Status reason", rj.status_reason || "—"],
      ["Cron", rj.cron || "—"], ["Interval", rj.interval || "—"], ["Time zone", rj.time_zone],
      ["Margin", `${rj.margin_before} before, ${rj.margin_after} after`],
      ["Deadline", rj.deadline || "—"], ["Risk mode", rj.risk_mode],
      ["Runs", el("a", { href: `#/runs${qs({ recurring: rj.id })}`, text: "This recurring job's runs" })],
    ]));
    next.replaceChildren(rj.next && rj.next.length ? table("Next nominal times and their margins (UTC)", [
      { label: "Nominal time", get: (x) => fmtTime(x.nominal_time) },
      { label: "Margin opens", get: (x) => fmtTime(x.margin_start) },
      { label: "Margin closes", get: (x) => fmtTime(x.margin_end) },
    ], rj.next) : el("p", { class: "note", text: "No upcoming firings." }));
    nextPlan.replaceChildren(rj.next_preview
      ? el("div", {}, rj.next_preview.rationale ? el("p", { class: "rationale", text: rj.next_preview.rationale }) : "",
        facts([["Planned start (UTC)", fmtTime(rj.next_preview.chosen?.proposed_start)], ["Region", rj.next_preview.chosen?.region || "—"],
          ["Expected saving", rj.next_preview.chosen?.expected_saving_pct == null ? "—" : `${fmtNum(rj.next_preview.chosen.expected_saving_pct, 1)} %`]]))
      : el("p", { class: "note", text: rj.next_preview_error ? `No preview: ${rj.next_preview_error}` : "No preview of the next firing." }));
    const state = String(rj.status).toLowerCase();
    const deleted = state === "deleted";
    pause.disabled = deleted || state === "paused";
    resume.disabled = deleted || state !== "paused";
    trigger.disabled = deleted;
  };
  const act = (what, btn) => btn.addEventListener("click", async () => {
    btn.disabled = true;
    try {
      const out = await call(`/v1/recurring-jobs/${encodeURIComponent(rj.id)}/${what}`, { method: "POST", body: {} });
      if (what === "trigger") say(out.detail || "Firing requested.");
      rj = await load();
      if (what !== "trigger") say(`${rj.name || rj.id} is ${rj.status}.`);
      msg.replaceChildren();
    } catch (e) { msg.replaceChildren(errorBox(e, `${what} refused`)); }
    render();
  });
  act("pause", pause);
  act("resume", resume);
  act("trigger", trigger);
  page(rj.name || `Recurring job ${rj.id}`, info, el("div", { class: "actions" }, pause, resume, trigger), msg,
    el("section", { "aria-labelledby": "h-next" }, el("h2", { id: "h-next", text: "Next firings" }), next),
    el("section", { "aria-labelledby": "h-np" }, el("h2", { id: "h-np", text: "The next firing's plan" }), nextPlan));
  render();
}

// ---------------------------------------------------------------- carbon report
async function reportPage(params, mine) {
  const today = new Date();
  const yearAgo = new Date(today.getTime() - 365 * 86400e3);
  const day = (d) => d.toISOString().slice(0, 10);
  const from = el("input", { id: "r-from", name: "from", type: "date", value: params.get("from") || day(yearAgo), required: true });
  const to = el("input", { id: "r-to", name: "to", type: "date", value: params.get("to") || day(new Date(today.getTime() + 86400e3)), required: true });
  const group = el("select", { id: "r-group", name: "group_by" },
    [["month", "Month"], ["template", "Job template"], ["recurring_job", "Recurring job"], ["region", "Region"]]
      .map(([v, l]) => el("option", { value: v, selected: (params.get("group_by") || "month") === v || null, text: l })));
  const field = (id, label, c) => el("div", { class: "field" }, el("label", { for: id, text: label }), c);
  const csv = el("button", { type: "button", class: "secondary", text: "Download CSV" });
  const form = el("form", { class: "filters", "aria-label": "Report period" },
    field("r-from", "From (UTC day, inclusive)", from), field("r-to", "To (UTC day, exclusive)", to), field("r-group", "Group by", group),
    el("button", { type: "submit", text: "Show report" }), csv);
  const query = () => qs({ from: `${from.value}T00:00:00Z`, to: `${to.value}T00:00:00Z`, group_by: group.value });
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    location.hash = `#/report${qs({ from: from.value, to: to.value, group_by: group.value })}`;
  });
  const out = el("div");
  const figure = el("figure", { class: "chart" }, el("p", { class: "note", text: "Loading the chart…" }));
  const csvMsg = el("div");
  page("Carbon report", form, csvMsg, out,
    el("section", { "aria-labelledby": "h-chart" }, el("h2", { id: "h-chart", text: "Chart" }), figure));
  csv.addEventListener("click", async () => {
    csv.disabled = true;
    try {
      const r = await call(`/v1/reports/carbon${query()}`, { accept: "text/csv", raw: true });
      const blob = await r.blob();
      const m = /filename="([^"]+)"/.exec(r.headers.get("Content-Disposition") || "");
      const url = URL.createObjectURL(new Blob([blob], { type: "text/csv" }));
      const a = el("a", { href: url, download: m ? m[1] : "carbon.csv", hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      csvMsg.replaceChildren();
      say("The CSV is downloading.");
    } catch (e) { csvMsg.replaceChildren(errorBox(e, "CSV download failed")); } finally { csv.disabled = false; }
  });
  let rep;
  try {
    rep = await call(`/v1/reports/carbon${query()}`);
  } catch (e) {
    if (mine === generation) out.replaceChildren(errorBox(e));
    figure.replaceChildren();
    return;
  }
  if (mine !== generation) return;
  const scalars = Object.entries(rep).filter(([, v]) => v === null || typeof v !== "object");
  const nested = Object.entries(rep).filter(([k, v]) => v && typeof v === "object" && !["rows", "total", "notes"].includes(k));
  const t = rep.total || {};
  // the report's own display strings (one unit for the whole report), so the headline reads exactly as the
  // chart and the CSV; computed here only for an answer without them
  const d = t.display || {};
  const pct = d.saving_pct ?? (t.emissions_baseline_g > 0 ? `${fmtNum((100 * t.saving_g) / t.emissions_baseline_g, 1)}%` : "n/a");
  const headline = typeof t.saving_g === "number" && typeof t.emissions_baseline_g === "number"
    ? el("p", { class: "headline" }, `${fmtNum(t.runs ?? 0)} run${t.runs === 1 ? "" : "s"}: emitted ${d.emissions_chosen ?? grams(t.emissions_chosen_g)} where starting at the earliest start would have emitted ${d.emissions_baseline ?? grams(t.emissions_baseline_g)}; saved `,
      el("strong", { text: `${d.saving ?? grams(t.saving_g)}${t.emissions_baseline_g > 0 ? ` (${pct})` : ""}` }), ".")
    : null;
  out.replaceChildren(
    headline,
    facts(scalars.map(([k, v]) => [humanKey(k), fmtAny(v)])),
    ...nested.map(([k, v]) => el("section", {}, el("h2", { text: humanKey(k) }), genericValue(v, humanKey(k)))),
    el("h2", { text: "Ledger" }),
    Array.isArray(rep.rows) && rep.rows.length ? genericTable(`Per ${humanKey(rep.group_by || "group")}, total last`, rep.rows, rep.total)
      : el("p", { class: "note", text: "No runs in this period." }),
    Array.isArray(rep.notes) && rep.notes.length ? el("section", {}, el("h2", { text: "Notes" }), el("ul", {}, rep.notes.map((x) => el("li", { text: x })))) : "");
  if (await chartInto(figure, `/v1/reports/carbon${query()}&format=svg`, {}, "Emissions at the chosen starts against the baseline, per period")) {
    figure.append(el("figcaption", { text: "Baseline (earliest start) against chosen start." }));
  }
}

// grams of CO2e scaled to g / kg / t
function grams(g) {
  if (typeof g !== "number") return "—";
  const a = Math.abs(g);
  if (a >= 1e6) return `${fmtNum(g / 1e6, 2)} t CO2e`;
  if (a >= 1e3) return `${fmtNum(g / 1e3, 2)} kg CO2e`;
  return `${fmtNum(g, 2)} g CO2e`;
}

// ---------------------------------------------------------------- preview
async function previewPage(mine) {
  const [tpls, fleets] = await Promise.all([call("/v1/job-templates?limit=200"), call("/v1/fleet-templates?limit=1000").catch(() => ({ items: [] }))]);
  if (mine !== generation) return;
  const local = (d) => d.toISOString().slice(0, 16);
  const now = new Date();
  now.setUTCMinutes(0, 0, 0);
  const field = (id, label, c, hint) => el("div", { class: "field" }, el("label", { for: id, text: label }), c,
    hint ? el("span", { class: "hint", id: `${id}-hint`, text: hint }) : null);
  const tpl = el("select", { id: "p-template", name: "job_template_id", required: true },
    tpls.items.map((t) => el("option", { value: t.id, text: `${t.name} (${t.id})` })));
  const fleetItems = Array.isArray(fleets) ? fleets : (fleets.items || []);
  const fleet = el("input", { id: "p-fleet", name: "fleet_template_id", list: "p-fleet-list", autocomplete: "off",
    placeholder: "the template's", "aria-describedby": "p-fleet-hint" });
  const fleetList = el("datalist", { id: "p-fleet-list" }, fleetItems.map((f) => el("option", { value: f.id })));
  const earliest = el("input", { id: "p-earliest", name: "earliest_start", type: "datetime-local", required: true, value: local(new Date(now.getTime() + 3600e3)) });
  const latest = el("input", { id: "p-latest", name: "latest_finish", type: "datetime-local", required: true, value: local(new Date(now.getTime() + 13 * 3600e3)) });
  const risk = el("select", { id: "p-risk", name: "risk_mode" }, ["NEUTRAL", "CONSERVATIVE", "AGGRESSIVE"].map((r) => el("option", { value: r, text: r })));
  const w = (id, name, v) => el("input", { id, name, type: "number", min: 0, max: 1000, step: "any", value: v, required: true });
  const wc = w("p-wc", "carbon", 0.5), wr = w("p-wr", "risk", 0.4), ws = w("p-ws", "slack", 0.1);
  const regions = el("input", { id: "p-regions", name: "regions", autocomplete: "off", placeholder: "e.g. eu-west-3, eu-north-1", "aria-describedby": "p-regions-hint" });
  const submit = el("button", { type: "submit", text: "Preview" });
  const form = el("form", { class: "stack", "aria-label": "Preview a job" },
    field("p-template", "Job template", tpl),
    field("p-fleet", "Fleet template (optional)", fleet, "An EC2 instance type; empty: the template's."), fleetList,
    el("div", { class: "row" }, field("p-earliest", "Earliest start (UTC)", earliest), field("p-latest", "Latest finish (UTC)", latest)),
    field("p-risk", "Risk mode", risk),
    el("fieldset", { class: "row" }, el("legend", { text: "Weights" }), field("p-wc", "Carbon", wc), field("p-wr", "Risk", wr), field("p-ws", "Slack", ws)),
    field("p-regions", "Regions (optional)", regions, "Comma-separated AWS regions; empty: the template's and your account's."),
    el("div", {}, submit));
  const out = el("div", { id: "preview-result" });
  const figure = el("figure", { class: "chart" });
  page("Preview", tpls.items.length ? form : el("p", { class: "note", text: "Create a job template first (POST /v1/job-templates)." }), out, figure);
  const inputs = { job_template_id: tpl, fleet_template_id: fleet, earliest_start: earliest, latest_finish: latest, risk_mode: risk,
    "weights.carbon": wc, "weights.risk": wr, "weights.slack": ws, regions };
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    Object.values(inputs).forEach((i) => i.removeAttribute("aria-invalid"));
    const utc = (v) => (v ? `${v.length === 16 ? v + ":00" : v}Z` : v);
    const regionList = regions.value.split(",").map((s) => s.trim()).filter(Boolean);
    const body = {
      job_template_id: tpl.value, earliest_start: utc(earliest.value), latest_finish: utc(latest.value), risk_mode: risk.value,
      weights: { carbon: Number(wc.value), risk: Number(wr.value), slack: Number(ws.value) },
      ...(fleet.value.trim() ? { fleet_template_id: fleet.value.trim() } : {}), ...(regionList.length ? { regions: regionList } : {}),
    };
    submit.disabled = true;
    out.replaceChildren(el("p", { class: "note", text: "Scoring the window…" }));
    figure.replaceChildren();
    try {
      const p = await call("/v1/schedules/preview", { method: "POST", body });
      out.replaceChildren(
        el("h2", { text: "Chosen start" }),
        el("p", { class: "rationale", text: p.rationale }),
        facts([["Start (UTC)", fmtTime(p.chosen.proposed_start)], ["Region", p.chosen.region || p.home_region || "—"],
          ["Capacity", p.capacity], ["Saving vs earliest start", `${fmtNum(p.chosen.saving_vs_earliest_pct, 1)} %`],
          ["Feasible candidates", `${p.feasible_count} of ${p.total_count}`], ["Regions considered", (p.regions || []).join(", ") || "—"]]),
        el("h2", { text: "Best candidates" }),
        candidateTable("Best candidates, best first", p.candidates));
      say(`Preview ready: start ${fmtTime(p.chosen.proposed_start)}.`);
      if (out.getBoundingClientRect().top > window.innerHeight) out.scrollIntoView({ block: "start" });
      await chartInto(figure, "/v1/schedules/preview?format=svg", { method: "POST", body }, "Carbon forecast over the window and every candidate's score");
    } catch (e) {
      out.replaceChildren(errorBox(e, "Preview refused"));
      // mark the inputs the API named: by path ("weights/carbon"), or, for a rule over the whole body,
      // by the field names its message mentions ("earliest_start must be before latest_finish")
      for (const er of e.errors || []) {
        const k = String(er.path || "").replace(/\//g, ".");
        const named = inputs[k] ? [k] : Object.keys(inputs).filter((name) => String(er.message || "").includes(name));
        for (const name of named) inputs[name].setAttribute("aria-invalid", "true");
      }
    } finally { submit.disabled = false; }
  });
}

// ---------------------------------------------------------------- start
document.getElementById("logout").addEventListener("click", () => logout("Logged out."));
window.addEventListener("hashchange", () => { route().then(() => main.focus({ preventScroll: true })); });
route();

// The admin console: users, jobs, queues and dead letters, storage, and the audit log,
// each a table filled from the /admin/... JSON API with the session the main page keeps
// in this tab's sessionStorage. The API decides who is an admin: anyone it refuses sees
// "Admins only". Everything shown is text (textContent), never markup.

import { ApiProblem, problemFrom } from "./api.js";
import { formatBinaryBytes } from "./format.js";
import { clearMessages, showError, showNotice } from "./messages.js";
import { loadSession } from "./session.js";

const PAGE = 20;
const $ = (id) => document.getElementById(id);
const session = loadSession();
const state = {
  users: { offset: 0, q: "" },
  jobs: { offset: 0, status: "", owner: "" },
  audit: { offset: 0 },
  defaults: {},
  quotaUser: null,
  deadQueue: null,
};

// Build an element: h("td", { className: "x", dataset: { key: "v" } }, "text", child...).
function h(tag, { dataset = {}, ...props } = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  Object.assign(node.dataset, dataset);
  node.append(...children.filter((child) => child != null));
  return node;
}

function button(text, onClick, className = "button ghost small") {
  const node = h("button", { type: "button", className, textContent: text });
  node.addEventListener("click", onClick);
  return node;
}

async function call(method, path, body) {
  const headers = { Accept: "application/json", Authorization: `Bearer ${session.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  } catch {
    throw new ApiProblem("Cannot reach the server. Check your connection and try again.");
  }
  if (!response.ok) {
    const text = await response.text();
    throw problemFrom(response.status, response.statusText, text, response.headers.get("Retry-After"));
  }
  return response.status === 204 ? null : response.json();
}

function deny(reason) {
  $("console").hidden = true;
  $("denied").hidden = false;
  if (reason) $("denied-reason").textContent = reason;
}

// Run an admin action; a refusal that ends the console shows "Admins only".
async function attempt(action) {
  try {
    return await action();
  } catch (problem) {
    if (problem.status === 401) deny("Your session has ended: log in again on the conversions page.");
    else if (problem.status === 403) deny(problem.message);
    else showError(problem.message);
    return undefined;
  }
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "";
}

function pager(id, page, total, go) {
  const previous = button("Previous", () => go(Math.max(0, page.offset - PAGE)));
  previous.disabled = page.offset === 0;
  const next = button("Next", () => go(page.offset + PAGE));
  next.disabled = page.offset + PAGE >= total;
  const shown = total ? `${page.offset + 1}–${Math.min(total, page.offset + PAGE)} of ${total}` : "none";
  $(id).replaceChildren(previous, h("span", { className: "muted", textContent: shown }), next);
}

function fill(table, rows, emptyText) {
  const body = (typeof table === "string" ? $(table) : table).tBodies[0];
  const columns = body.parentElement.tHead.rows[0].cells.length;
  if (!rows.length) {
    rows = [h("tr", {}, h("td", { colSpan: columns, className: "muted", textContent: emptyText }))];
  }
  body.replaceChildren(...rows);
}

// Users

function quotaText(user) {
  if (user.admin) return "none (admin)";
  const parts = [];
  const o = user.quota_overrides || {};
  const d = state.defaults;
  const stored = o.stored_bytes ?? d.stored_bytes;
  const active = o.active_jobs ?? d.active_jobs;
  const rate = o.uploads_per_minute ?? d.uploads_per_minute;
  parts.push(stored == null ? "storage unlimited" : formatBinaryBytes(stored));
  parts.push(active == null ? "jobs unlimited" : `${active} jobs`);
  parts.push(rate == null ? "uploads unlimited" : `${rate}/min`);
  const set = Object.values(o).some((value) => value != null);
  return parts.join(" · ") + (set ? " (set)" : "");
}

function userRow(user) {
  const change = (body, done) =>
    attempt(async () => {
      await call("PATCH", `/admin/users/${user.id}`, body);
      showNotice(done);
      await Promise.all([loadUsers(), loadAudit()]);
    });
  // Auth refuses an admin's disabling, demoting or deleting themselves: offer none of it.
  const buttons = [];
  if (user.email !== session.email) {
    buttons.push(
      user.disabled
        ? button("Enable", () => change({ disabled: false }, `${user.email} is enabled.`))
        : button("Disable", () => change({ disabled: true }, `${user.email} is disabled.`)),
      user.admin
        ? button("Remove admin", () => change({ admin: false }, `${user.email} is no longer an admin.`))
        : button("Make admin", () => change({ admin: true }, `${user.email} is an admin.`)),
      button("Revoke sessions", () =>
        attempt(async () => {
          await call("POST", `/admin/users/${user.id}/revoke`);
          showNotice(`Every session of ${user.email} ends within 30 s.`);
          await loadAudit();
        }),
      ),
    );
  }
  if (!user.admin) buttons.push(button("Quotas", () => editQuotas(user))); // admins have none
  if (user.email !== session.email) {
    buttons.push(button("Delete", () => deleteUser(user), "button danger small"));
  }
  const actions = h("td", { className: "actions" }, h("div", {}, ...buttons));
  return h(
    "tr",
    { dataset: { email: user.email } },
    h("td", { textContent: user.email }),
    h("td", { textContent: user.admin ? "admin" : "user" }),
    h("td", { textContent: user.disabled ? "disabled" : "active", className: user.disabled ? "off" : "" }),
    h("td", { textContent: formatBinaryBytes(user.usage.stored_bytes) }),
    h("td", { textContent: `${user.usage.active_jobs} / ${user.usage.jobs}` }),
    h("td", { textContent: quotaText(user), className: "quotas" }),
    actions,
  );
}

async function loadUsers(offset = state.users.offset) {
  const params = new URLSearchParams({ q: state.users.q, limit: PAGE, offset });
  const listing = await call("GET", `/admin/users?${params}`);
  state.users.offset = offset;
  state.defaults = listing.default_quotas || {};
  fill("users", listing.users.map(userRow), "No users match.");
  pager("users-pager", state.users, listing.total, (next) => attempt(() => loadUsers(next)));
}

async function deleteUser(user) {
  const sure = window.confirm(
    `Delete ${user.email}? Their account, jobs and files go for good; this cannot be undone.`,
  );
  if (!sure) return;
  await attempt(async () => {
    const answer = await call("DELETE", `/admin/users/${user.id}`, { confirm: user.email });
    showNotice(
      answer.status === "deleted"
        ? `${user.email} and their files are deleted.`
        : `${user.email} is deleted; ${answer.remaining_jobs} of their jobs are still being erased.`,
    );
    await Promise.all([loadUsers(), loadJobs(), loadStorage(), loadAudit()]);
  });
}

const QUOTA_INPUTS = {
  stored_bytes: "quota-stored",
  active_jobs: "quota-active",
  uploads_per_minute: "quota-rate",
};

function editQuotas(user) {
  state.quotaUser = user;
  $("quota-email").textContent = user.email;
  for (const [name, id] of Object.entries(QUOTA_INPUTS)) {
    const value = user.quota_overrides[name];
    $(id).value = value == null ? "" : String(value);
    const fallback = state.defaults[name];
    $(id).placeholder = fallback == null ? "unlimited" : String(fallback);
  }
  $("quota-form").hidden = false;
  $("quota-stored").focus();
}

async function saveQuotas(event) {
  event.preventDefault();
  const user = state.quotaUser;
  const body = { email: user.email };
  for (const [name, id] of Object.entries(QUOTA_INPUTS)) {
    const text = $(id).value.trim();
    body[name] = text === "" ? null : Number(text);
  }
  await attempt(async () => {
    await call("PUT", `/admin/users/${user.id}/quotas`, body);
    $("quota-form").hidden = true;
    showNotice(`Quotas of ${user.email} are saved.`);
    await Promise.all([loadUsers(), loadAudit()]);
  });
}

async function createUser(event) {
  event.preventDefault();
  const body = {
    email: $("new-email").value.trim(),
    password: $("new-password").value,
    admin: $("new-admin").checked,
  };
  await attempt(async () => {
    await call("POST", "/admin/users", body);
    $("create-user").reset();
    showNotice(`${body.email} can log in now.`);
    await Promise.all([loadUsers(), loadAudit()]);
  });
}

// Jobs

function jobRow(job) {
  return h(
    "tr",
    {},
    h("td", { textContent: when(job.created_at) }),
    h("td", { textContent: job.owner }),
    h("td", { textContent: job.filename || "", title: job.job_id }),
    h("td", {}, h("span", { className: `badge badge-${job.status}`, textContent: job.status })),
    h("td", { textContent: job.error || "", className: "reason" }),
  );
}

async function loadJobs(offset = state.jobs.offset) {
  const params = new URLSearchParams({ limit: PAGE, offset });
  if (state.jobs.status) params.set("status", state.jobs.status);
  if (state.jobs.owner) params.set("owner", state.jobs.owner);
  const listing = await call("GET", `/admin/jobs?${params}`);
  state.jobs.offset = offset;
  fill("jobs", listing.jobs.map(jobRow), "No jobs match.");
  pager("jobs-pager", state.jobs, listing.total, (next) => attempt(() => loadJobs(next)));
}

// Queues and dead letters

async function loadQueues() {
  const { queues } = await call("GET", "/admin/queues");
  fill(
    "queues",
    queues.map((queue) =>
      h(
        "tr",
        { dataset: { queue: queue.queue } },
        h("td", { textContent: queue.queue, title: queue.broker_queue }),
        h("td", { textContent: queue.messages ?? "not declared" }),
        h("td", { textContent: queue.consumers ?? "" }),
        h("td", { textContent: queue.dead_letters }),
        h(
          "td",
          { className: "actions" },
          h(
            "div",
            {},
            queue.dead_letters
              ? button("Dead letters", () => attempt(() => showDeadLetters(queue.queue)))
              : null,
          ),
        ),
      ),
    ),
    "No queues.",
  );
}

async function showDeadLetters(queue) {
  state.deadQueue = queue;
  const listing = await call("GET", `/admin/dead-letters/${queue}?limit=${PAGE}`);
  $("dead-letters-title").textContent = `Dead letters of ${queue}: ${listing.total}`;
  const settle = (action, body, done) =>
    attempt(async () => {
      const outcome = await call("POST", `/admin/dead-letters/${queue}/${action}`, body);
      showNotice(`${outcome.count} ${done}.`);
      await Promise.all([loadQueues(), loadAudit()]);
      await showDeadLetters(queue);
    });
  fill(
    $("dead-letters").querySelector("table"),
    listing.messages.map((message) =>
      h(
        "tr",
        {},
        h("td", { textContent: message.job_id || message.message_id || "" }),
        h("td", { textContent: message.reason || "" }),
        h("td", { textContent: when(message.died_at) }),
        h(
          "td",
          { className: "actions" },
          message.message_id
            ? h(
                "div",
                {},
                button("Replay", () => settle("replay", { ids: [message.message_id] }, "replayed")),
                button(
                  "Discard",
                  () => settle("discard", { ids: [message.message_id] }, "discarded"),
                  "button danger small",
                ),
              )
            : null,
        ),
      ),
    ),
    "No dead letters.",
  );
  $("dead-letters").hidden = false;
  $("replay-all").onclick = () => settle("replay", { all: true }, "replayed");
  $("discard-all").onclick = () => {
    if (window.confirm(`Discard every dead letter of ${queue}? They cannot be replayed after.`)) {
      settle("discard", { all: true, confirm: queue }, "discarded");
    }
  };
}

// Storage

async function loadStorage() {
  const totals = await call("GET", "/admin/storage");
  fill(
    "storage",
    totals.buckets.map((bucket) =>
      h(
        "tr",
        {},
        h("td", { textContent: bucket.bucket }),
        h("td", { textContent: bucket.files.toLocaleString() }),
        h("td", { textContent: formatBinaryBytes(bucket.bytes) }),
      ),
    ),
    "No buckets.",
  );
  fill(
    "job-states",
    Object.entries(totals.jobs_by_status).map(([status, count]) =>
      h("tr", {}, h("td", { textContent: status }), h("td", { textContent: count.toLocaleString() })),
    ),
    "No jobs.",
  );
}

// Audit

function detailsText(details) {
  return Object.entries(details || {})
    .filter(([, value]) => value != null && !(Array.isArray(value) && !value.length))
    .map(([key, value]) => `${key}: ${Array.isArray(value) ? value.join(", ") : value}`)
    .join("; ");
}

async function loadAudit(offset = state.audit.offset) {
  const listing = await call("GET", `/admin/audit?limit=${PAGE}&offset=${offset}`);
  state.audit.offset = offset;
  fill(
    "audit",
    listing.entries.map((entry) =>
      h(
        "tr",
        {},
        h("td", { textContent: when(entry.at) }),
        h("td", { textContent: entry.actor }),
        h("td", { textContent: entry.action, className: "action" }),
        h("td", { textContent: entry.target }),
        h("td", { textContent: detailsText(entry.details), className: "details" }),
      ),
    ),
    "Nothing yet.",
  );
  pager("audit-pager", state.audit, listing.total, (next) => attempt(() => loadAudit(next)));
}

async function start() {
  if (!session) {
    deny("Log in on the conversions page first, then come back here.");
    return;
  }
  $("admin-email").textContent = session.email;
  $("admin-session").hidden = false;
  // The users list is the gate: it answers 403 to anyone but an admin.
  const allowed = await attempt(async () => {
    await loadUsers(0);
    return true;
  });
  if (!allowed) return;
  $("console").hidden = false;
  await Promise.all([
    attempt(() => loadJobs(0)),
    attempt(loadQueues),
    attempt(loadStorage),
    attempt(() => loadAudit(0)),
  ]);
}

$("user-search").addEventListener("submit", (event) => {
  event.preventDefault();
  clearMessages();
  state.users.q = $("user-query").value.trim();
  attempt(() => loadUsers(0));
});
$("job-filter").addEventListener("submit", (event) => {
  event.preventDefault();
  clearMessages();
  state.jobs.status = $("job-status").value;
  state.jobs.owner = $("job-owner").value.trim();
  attempt(() => loadJobs(0));
});
$("create-user").addEventListener("submit", createUser);
$("quota-form").addEventListener("submit", saveQuotas);
$("quota-cancel").addEventListener("click", () => ($("quota-form").hidden = true));
$("queues-refresh").addEventListener("click", () => attempt(loadQueues));

start();

// The video2mp3 web page: log in, upload with options, watch jobs, download MP3s.
// Plain script, no build step. It uses the same JSON API as every other client;
// the token lives in this tab's sessionStorage and goes out as a Bearer header.
"use strict";

(() => {
  const SESSION_KEY = "video2mp3.session";
  const POLL_MS = 1500;
  const POLL_RETRY_MS = 5000;
  const PAGE_SIZE = 50;
  const ACTIVE = new Set(["queued", "processing"]);
  const STATUS_LABELS = {
    queued: "Queued",
    processing: "Converting",
    done: "Done",
    failed: "Failed",
  };

  const $ = (id) => document.getElementById(id);
  const el = {
    message: $("message"),
    notice: $("notice"),
    session: $("session"),
    sessionEmail: $("session-email"),
    sessionExpiry: $("session-expiry"),
    logout: $("logout"),
    loginView: $("login-view"),
    loginForm: $("login-form"),
    loginEmail: $("login-email"),
    loginPassword: $("login-password"),
    loginButton: $("login-button"),
    appView: $("app-view"),
    uploadForm: $("upload-form"),
    dropZone: $("drop-zone"),
    fileInput: $("file-input"),
    fileName: $("file-name"),
    encoding: $("opt-encoding"),
    uploadButton: $("upload-button"),
    uploadProgress: $("upload-progress"),
    uploadLabel: $("upload-label"),
    uploadDetail: $("upload-detail"),
    uploadBar: $("upload-bar"),
    uploadCancel: $("upload-cancel"),
    usage: $("usage"),
    refresh: $("refresh"),
    jobList: $("job-list"),
    jobsEmpty: $("jobs-empty"),
    jobsMore: $("jobs-more"),
  };

  let session = null; // {token, email, expiresAt (ms since the epoch)}
  let chosenFile = null;
  let currentUpload = null; // the XMLHttpRequest while an upload runs
  let pollTimer = null;
  let expiryTimer = null;
  let clockTimer = null;
  let noticeTimer = null;
  let refreshSeq = 0;
  let usageSeq = 0;
  let jobsSignature = null; // the job ids and states last shown: usage changes when they do
  const rows = new Map(); // job_id -> <li>
  const lastStatus = new Map(); // job_id -> status seen on the previous refresh

  // ---- messages -----------------------------------------------------------

  function showError(text) {
    el.message.replaceChildren();
    if (!text) return;
    const span = document.createElement("span");
    span.textContent = text;
    const close = document.createElement("button");
    close.type = "button";
    close.className = "message-close";
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    close.addEventListener("click", () => el.message.replaceChildren());
    el.message.append(span, close);
  }

  function showNotice(text, { sticky = false, warning = false } = {}) {
    clearTimeout(noticeTimer);
    el.notice.textContent = text || "";
    el.notice.classList.toggle("warning", warning);
    if (text && !sticky) noticeTimer = setTimeout(() => (el.notice.textContent = ""), 8000);
  }

  function clearMessages() {
    showError("");
    showNotice("");
  }

  // ---- the API ------------------------------------------------------------

  class ApiProblem extends Error {
    constructor(message, { status = 0, code = null, field = null } = {}) {
      super(message);
      this.status = status;
      this.code = code;
      this.field = field;
    }
  }

  function problemFrom(status, statusText, text, retryAfter) {
    let body = {};
    try {
      body = JSON.parse(text) || {};
    } catch {
      // A proxy's HTML error page, say: fall back to the status line.
    }
    let message = body.message || `The server answered ${status} ${statusText || ""}`.trim() + ".";
    const wait = status === 429 || status === 503 ? retryDelay(retryAfter) : null;
    // Unless the server's own words already say when.
    if (wait != null && !/try again (in|at)\b/i.test(message)) {
      if (!/[.!?]$/.test(message)) message += ".";
      message += ` Try again ${formatDelay(wait)}.`;
    }
    return new ApiProblem(message, { status, code: body.error || null, field: body.field || null });
  }

  // Retry-After is a number of seconds or an HTTP date; return seconds, or null if absent.
  function retryDelay(retryAfter) {
    if (!retryAfter) return null;
    const text = retryAfter.trim();
    if (/^\d+$/.test(text)) return Number(text);
    const at = Date.parse(text);
    return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - Date.now()) / 1000));
  }

  function formatDelay(seconds) {
    if (seconds <= 0) return "now";
    if (seconds < 90) return `in ${seconds} s`;
    if (seconds < 90 * 60) return `in ${Math.ceil(seconds / 60)} min`;
    const at = new Date(Date.now() + seconds * 1000);
    return `at ${at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}`;
  }

  const OFFLINE = "Cannot reach the server. Check your connection and try again.";

  async function api(method, path, { headers = {}, body } = {}) {
    let response;
    try {
      response = await fetch(path, {
        method,
        body,
        cache: "no-store",
        // No cookies or remembered HTTP credentials: the token is the only credential.
        credentials: "omit",
        headers: { Accept: "application/json", Authorization: `Bearer ${session.token}`, ...headers },
      });
    } catch {
      throw new ApiProblem(OFFLINE);
    }
    if (response.status === 401) {
      endSession("Your session has ended. Log in again.");
      throw new ApiProblem("Not logged in.", { status: 401, code: "session_ended" });
    }
    if (!response.ok) {
      const text = await response.text();
      throw problemFrom(response.status, response.statusText, text, response.headers.get("Retry-After"));
    }
    return response;
  }

  function basicAuthorization(email, password) {
    // btoa() takes Latin-1 only; send the credentials as UTF-8 bytes.
    let binary = "";
    for (const byte of new TextEncoder().encode(`${email}:${password}`)) {
      binary += String.fromCharCode(byte);
    }
    return `Basic ${btoa(binary)}`;
  }

  // ---- session ------------------------------------------------------------

  function loadSession() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY));
      if (saved && saved.token && saved.expiresAt > Date.now()) return saved;
    } catch {
      // Unreadable: treat as logged out.
    }
    sessionStorage.removeItem(SESSION_KEY);
    return null;
  }

  async function logIn(event) {
    event.preventDefault();
    clearMessages();
    const email = el.loginEmail.value.trim();
    const password = el.loginPassword.value;
    if (!email || !password) {
      showError("Enter your email and password.");
      return;
    }
    el.loginButton.disabled = true;
    el.loginButton.textContent = "Logging in…";
    try {
      let response;
      try {
        response = await fetch("/login", {
          method: "POST",
          cache: "no-store",
          // "omit" keeps Chromium from offering its own Basic-auth dialog on a 401.
          credentials: "omit",
          headers: { Accept: "application/json", Authorization: basicAuthorization(email, password) },
        });
      } catch {
        throw new ApiProblem(OFFLINE);
      }
      const text = await response.text();
      if (!response.ok) {
        throw problemFrom(response.status, response.statusText, text, response.headers.get("Retry-After"));
      }
      const body = JSON.parse(text);
      session = { token: body.token, email, expiresAt: Date.now() + body.expires_in * 1000 };
      sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
      el.loginPassword.value = "";
      startSession();
    } catch (problem) {
      showError(problem.message);
      el.loginPassword.select();
      el.loginPassword.focus();
    } finally {
      el.loginButton.disabled = false;
      el.loginButton.textContent = "Log in";
    }
  }

  function startSession() {
    el.loginView.hidden = true;
    el.appView.hidden = false;
    el.session.hidden = false;
    el.sessionEmail.textContent = session.email;
    showExpiry();
    clockTimer = setInterval(showExpiry, 30000);
    expiryTimer = setTimeout(
      () => endSession("Your session has expired. Log in again."),
      Math.max(0, session.expiresAt - Date.now()),
    );
    refreshJobs();
    refreshUsage();
  }

  function showExpiry() {
    const left = Math.max(0, session.expiresAt - Date.now());
    const at = new Date(session.expiresAt).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    const minutes = Math.round(left / 60000);
    const within = minutes >= 1 ? `in ${minutes} min` : "in less than a minute";
    el.sessionExpiry.textContent = `· session ends at ${at} (${within})`;
    el.sessionExpiry.title = new Date(session.expiresAt).toString();
  }

  function endSession(reason) {
    if (currentUpload) currentUpload.abort();
    clearTimeout(pollTimer);
    clearTimeout(expiryTimer);
    clearInterval(clockTimer);
    refreshSeq += 1; // answers still on their way belong to the old session
    usageSeq += 1;
    jobsSignature = null;
    el.usage.hidden = true;
    el.usage.replaceChildren();
    session = null;
    sessionStorage.removeItem(SESSION_KEY);
    rows.clear();
    lastStatus.clear();
    el.jobList.replaceChildren();
    chooseFile(null);
    el.appView.hidden = true;
    el.session.hidden = true;
    el.loginView.hidden = false;
    clearMessages();
    if (reason) showNotice(reason, { sticky: true });
    el.loginEmail.focus();
  }

  // ---- choosing a file ----------------------------------------------------

  function formatBytes(bytes) {
    if (bytes == null) return "";
    const units = ["bytes", "KB", "MB", "GB", "TB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1000 && unit < units.length - 1) {
      value /= 1000;
      unit += 1;
    }
    return unit === 0 ? `${value} bytes` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
  }

  function chooseFile(file) {
    chosenFile = file;
    el.fileName.textContent = file ? `${file.name} · ${formatBytes(file.size)}` : "No file chosen";
    el.fileName.classList.toggle("chosen", Boolean(file));
    el.dropZone.classList.toggle("has-file", Boolean(file));
    el.uploadButton.disabled = !file || Boolean(currentUpload);
    if (!file) el.fileInput.value = "";
  }

  function setUpDropZone() {
    let depth = 0; // dragenter/dragleave fire for every child element crossed
    el.dropZone.addEventListener("dragenter", (event) => {
      event.preventDefault();
      depth += 1;
      el.dropZone.classList.add("dragging");
    });
    el.dropZone.addEventListener("dragover", (event) => {
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
    });
    el.dropZone.addEventListener("dragleave", () => {
      depth = Math.max(0, depth - 1);
      if (depth === 0) el.dropZone.classList.remove("dragging");
    });
    el.dropZone.addEventListener("drop", (event) => {
      event.preventDefault();
      depth = 0;
      el.dropZone.classList.remove("dragging");
      const files = event.dataTransfer ? event.dataTransfer.files : [];
      if (!files.length) return;
      clearMessages();
      chooseFile(files[0]);
      if (files.length > 1) showNotice(`One file at a time: took ${files[0].name}.`);
    });
    // A file dropped beside the zone must not make the browser navigate away to it.
    for (const type of ["dragover", "drop"]) {
      window.addEventListener(type, (event) => event.preventDefault());
    }
    el.fileInput.addEventListener("change", () => {
      clearMessages();
      chooseFile(el.fileInput.files[0] || null);
    });
  }

  // ---- uploading ----------------------------------------------------------

  function optionFields() {
    const fields = [];
    const [name, value] = el.encoding.value.split(":");
    if (value) fields.push([name, value]);
    for (const input of el.uploadForm.querySelectorAll(".options [name]")) {
      const text = input.value.trim();
      if (text) fields.push([input.name, text]);
    }
    return fields;
  }

  function markInvalid(field) {
    for (const control of el.uploadForm.querySelectorAll("[data-fields]")) {
      const matches = Boolean(field) && control.dataset.fields.split(" ").includes(field);
      if (matches) {
        control.setAttribute("aria-invalid", "true");
        control.setAttribute("aria-errormessage", "message");
        control.focus();
      } else {
        control.removeAttribute("aria-invalid");
        control.removeAttribute("aria-errormessage");
      }
    }
  }

  function showUploadProgress(loaded, total) {
    const percent = total ? Math.floor((loaded / total) * 100) : 0;
    el.uploadBar.value = percent;
    el.uploadDetail.textContent = `${formatBytes(loaded)} of ${formatBytes(total)} · ${percent}%`;
  }

  function upload(event) {
    event.preventDefault();
    if (!chosenFile || currentUpload) return;
    clearMessages();
    markInvalid(null);
    const file = chosenFile;
    const form = new FormData();
    // Options first: the server checks them before it keeps the file.
    for (const [name, value] of optionFields()) form.append(name, value);
    form.append("file", file, file.name);

    const xhr = new XMLHttpRequest();
    currentUpload = xhr;
    xhr.open("POST", "/upload");
    xhr.setRequestHeader("Authorization", `Bearer ${session.token}`);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (progress) => {
      if (progress.lengthComputable) showUploadProgress(progress.loaded, progress.total);
    });
    xhr.upload.addEventListener("load", () => {
      el.uploadLabel.textContent = "Uploaded, waiting for the server…";
    });
    xhr.addEventListener("load", () => {
      if (xhr.status === 202) {
        el.uploadLabel.textContent = `Uploaded ${file.name}`;
        showUploadProgress(file.size, file.size);
        showNotice(`Uploaded ${file.name}. Converting it now.`);
        chooseFile(null);
        // A title names one recording; the other options often suit the next file too.
        $("opt-title").value = "";
        refreshJobs();
      } else if (xhr.status === 401) {
        endSession("Your session has ended. Log in again.");
      } else {
        const problem = problemFrom(
          xhr.status,
          xhr.statusText,
          xhr.responseText,
          xhr.getResponseHeader("Retry-After"),
        );
        showError(problem.message);
        markInvalid(problem.field);
        // Refused by a quota: show the figures the refusal was about.
        if (xhr.status === 429 || xhr.status === 507) refreshUsage();
      }
    });
    xhr.addEventListener("error", () => {
      showError("The upload failed: the connection to the server was lost. Try again.");
    });
    xhr.addEventListener("abort", () => {
      if (session) showNotice("Upload cancelled.");
    });
    xhr.addEventListener("loadend", () => {
      currentUpload = null;
      el.uploadButton.disabled = !chosenFile;
      el.uploadCancel.hidden = true;
      const succeeded = xhr.status === 202;
      setTimeout(() => {
        if (!currentUpload) el.uploadProgress.hidden = true;
      }, succeeded ? 3000 : 0);
    });

    el.uploadLabel.textContent = `Uploading ${file.name}`;
    showUploadProgress(0, file.size);
    el.uploadProgress.hidden = false;
    el.uploadCancel.hidden = false;
    el.uploadButton.disabled = true;
    xhr.send(form);
  }

  // ---- the job list -------------------------------------------------------

  function schedulePoll(delay) {
    clearTimeout(pollTimer);
    pollTimer = setTimeout(refreshJobs, delay);
  }

  async function refreshJobs() {
    if (!session) return;
    clearTimeout(pollTimer);
    const seq = ++refreshSeq;
    let page;
    try {
      const response = await api("GET", `/jobs?limit=${PAGE_SIZE}`);
      page = await response.json();
    } catch (problem) {
      if (seq !== refreshSeq || !session) return;
      showError(problem.message);
      if ([...lastStatus.values()].some((status) => ACTIVE.has(status))) schedulePoll(POLL_RETRY_MS);
      return;
    }
    if (seq !== refreshSeq || !session) return; // a newer refresh or a logout overtook this one
    renderJobs(page.jobs, page.total);
    if (page.jobs.some((job) => ACTIVE.has(job.status))) schedulePoll(POLL_MS);
  }

  function renderJobs(jobs, total) {
    const seen = new Set();
    jobs.forEach((job, index) => {
      seen.add(job.job_id);
      let row = rows.get(job.job_id);
      if (!row) {
        row = createRow();
        rows.set(job.job_id, row);
      }
      updateRow(row, job);
      announceChange(job);
      // Move only what is out of place: moving a row would take focus off its buttons.
      if (el.jobList.children[index] !== row) {
        el.jobList.insertBefore(row, el.jobList.children[index] || null);
      }
    });
    for (const [jobId, row] of rows) {
      if (!seen.has(jobId)) {
        row.remove();
        rows.delete(jobId);
        lastStatus.delete(jobId);
      }
    }
    el.jobsEmpty.hidden = jobs.length > 0;
    el.jobsMore.hidden = total <= jobs.length;
    el.jobsMore.textContent = `Showing the newest ${jobs.length} of ${total} conversions.`;
    // A job that came, went or finished changes what is stored and running; progress does not.
    const signature = `${total} ${jobs.map((job) => `${job.job_id}:${job.status}`).join(" ")}`;
    if (jobsSignature !== null && signature !== jobsSignature) refreshUsage();
    jobsSignature = signature;
  }

  // ---- usage and quotas ---------------------------------------------------

  async function refreshUsage() {
    if (!session) return;
    const seq = ++usageSeq;
    let account;
    try {
      const response = await api("GET", "/me");
      account = await response.json();
    } catch {
      // The line is a convenience: keep the last figures rather than raise an alarm over it.
      return;
    }
    if (seq !== usageSeq || !session) return; // a newer refresh or a logout overtook this one
    renderUsage(account);
  }

  function formatBinaryBytes(bytes) {
    // Quotas are set in binary units (10 GiB = 10 × 2³⁰ bytes): show them as set.
    const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return unit === 0 ? `${value} bytes` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
  }

  function usageItem(text, { used, limit, title } = {}) {
    const item = document.createElement("span");
    item.className = "usage-item";
    item.textContent = text;
    if (title) item.title = title;
    if (limit != null && used >= limit) item.dataset.state = "full";
    else if (limit != null && used >= 0.9 * limit) item.dataset.state = "near";
    return item;
  }

  function renderUsage(account) {
    const usage = account.usage || {};
    const quotas = account.quotas || {};
    const stored = usage.stored_bytes || 0;
    const active = usage.active_jobs || 0;
    const uploads = usage.uploads_last_minute || 0;
    const unlimited = [quotas.stored_bytes, quotas.active_jobs, quotas.uploads_per_minute].every(
      (quota) => quota == null,
    );
    const noLimit = unlimited ? "" : " (no limit)";
    const items = [
      usageItem(
        quotas.stored_bytes == null
          ? `Storage ${formatBinaryBytes(stored)}${noLimit}`
          : `Storage ${formatBinaryBytes(stored)} of ${formatBinaryBytes(quotas.stored_bytes)}`,
        { used: stored, limit: quotas.stored_bytes, title: `${stored.toLocaleString()} bytes` },
      ),
      usageItem(
        quotas.active_jobs == null
          ? `${active} ${active === 1 ? "job" : "jobs"} running${noLimit}`
          : `${active} of ${quotas.active_jobs} jobs running`,
        { used: active, limit: quotas.active_jobs },
      ),
    ];
    // Uploads per minute only matter when they are what stops the next upload.
    if (quotas.uploads_per_minute != null && uploads >= quotas.uploads_per_minute) {
      items.push(
        usageItem(`${uploads} of ${quotas.uploads_per_minute} uploads this minute`, {
          used: uploads,
          limit: quotas.uploads_per_minute,
        }),
      );
    }
    if (unlimited) items.push(usageItem("no limits"));
    const label = document.createElement("span");
    label.className = "visually-hidden";
    label.textContent = "Your usage: ";
    const parts = [label];
    items.forEach((item, index) => {
      if (index) parts.push(" · ");
      parts.push(item);
    });
    el.usage.replaceChildren(...parts);
    el.usage.hidden = false;
  }

  function announceChange(job) {
    const before = lastStatus.get(job.job_id);
    lastStatus.set(job.job_id, job.status);
    if (!before || before === job.status || !ACTIVE.has(before)) return;
    const name = job.filename || "Your file";
    if (job.status === "done") showNotice(`${name} is converted: the MP3 is ready to download.`);
    if (job.status === "failed") {
      const reason = job.error ? `: ${job.error}` : ".";
      showNotice(`${name} could not be converted${reason}`, { warning: true });
    }
  }

  function part(tag, className, parent) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (parent) parent.append(node);
    return node;
  }

  function createRow() {
    const row = part("li", "job");
    const main = part("div", "job-main", row);
    const head = part("div", "job-head", main);
    const name = part("span", "job-name", head);
    const badge = part("span", "badge", head);
    const meta = part("p", "job-meta muted", main);
    const progressLine = part("div", "job-progress", main);
    const progress = part("progress", "", progressLine);
    progress.max = 100;
    const progressText = part("span", "job-progress-text muted", progressLine);
    const error = part("p", "job-error", main);
    const actions = part("div", "job-actions", row);
    const download = part("button", "button primary small", actions);
    download.type = "button";
    download.textContent = "Download MP3";
    const remove = part("button", "button ghost small danger", actions);
    remove.type = "button";
    remove.textContent = "Delete";
    row.parts = { name, badge, meta, progressLine, progress, progressText, error, download, remove };
    download.addEventListener("click", () => downloadMp3(row.job, download));
    remove.addEventListener("click", () => deleteJob(row.job, remove));
    return row;
  }

  function updateRow(row, job) {
    const p = row.parts;
    row.job = job;
    row.dataset.jobId = job.job_id;
    row.dataset.status = job.status;
    const name = job.filename || "(no name)";
    p.name.textContent = name;
    p.name.title = name;
    p.badge.textContent = STATUS_LABELS[job.status] || job.status;
    p.badge.className = `badge badge-${job.status}`;
    p.meta.textContent = describeJob(job);

    const active = ACTIVE.has(job.status);
    p.progressLine.hidden = !active;
    if (job.status === "processing") {
      p.progress.value = job.progress || 0;
      p.progressText.textContent = `${job.progress || 0}%`;
    } else {
      p.progress.removeAttribute("value"); // indeterminate: waiting for a converter
      p.progressText.textContent = "Waiting for a converter…";
    }
    p.progress.setAttribute("aria-label", `Conversion progress of ${name}`);

    p.error.hidden = job.status !== "failed";
    p.error.textContent = job.status === "failed" ? job.error || "The conversion failed." : "";

    p.download.hidden = job.status !== "done" || !job.download_url;
    p.download.setAttribute("aria-label", `Download the MP3 of ${name}`);
    p.remove.setAttribute("aria-label", p.remove.dataset.armed ? `Confirm: delete ${name}` : `Delete ${name}`);
  }

  function formatSeconds(seconds) {
    const whole = Math.floor(seconds);
    const fraction = seconds - whole;
    const h = Math.floor(whole / 3600);
    const m = Math.floor((whole % 3600) / 60);
    const s = whole % 60;
    const tail = fraction ? fraction.toFixed(2).slice(1).replace(/0+$/, "") : "";
    const ss = `${String(s).padStart(2, "0")}${tail}`;
    return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
  }

  function describeJob(job) {
    const parts = [];
    if (job.created_at) {
      const created = new Date(job.created_at);
      const sameDay = created.toDateString() === new Date().toDateString();
      parts.push(
        sameDay
          ? created.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
          : created.toLocaleString([], { dateStyle: "medium", timeStyle: "short" }),
      );
    }
    if (job.size != null) parts.push(formatBytes(job.size));
    const o = job.options || {};
    if (o.bitrate != null) parts.push(`${o.bitrate} kbit/s`);
    else if (o.quality != null) parts.push(`VBR V${o.quality}`);
    else parts.push("192 kbit/s");
    if (o.sample_rate != null) parts.push(`${o.sample_rate / 1000} kHz`);
    if (o.channels != null) parts.push(o.channels === 1 ? "mono" : "stereo");
    if (o.start != null || o.end != null) {
      parts.push(`${formatSeconds(o.start || 0)}–${o.end != null ? formatSeconds(o.end) : "end"}`);
    }
    const tags = [o.title, o.artist, o.album].filter(Boolean);
    if (tags.length) parts.push(`“${tags.join(" · ")}”`);
    return parts.join(" · ");
  }

  function filenameFrom(disposition) {
    if (!disposition) return null;
    const encoded = /filename\*\s*=\s*UTF-8''([^;\s]+)/i.exec(disposition);
    if (encoded) {
      try {
        return decodeURIComponent(encoded[1]);
      } catch {
        // Malformed escape: try the plain name.
      }
    }
    const quoted = /filename\s*=\s*"((?:[^"\\]|\\.)*)"/i.exec(disposition);
    if (quoted) return quoted[1].replace(/\\(.)/g, "$1");
    const bare = /filename\s*=\s*([^;\s]+)/i.exec(disposition);
    return bare ? bare[1] : null;
  }

  function mp3Name(original) {
    const stem = (original || "audio").replace(/^.*[\\/]/, "").replace(/\.[^.]*$/, "");
    return `${stem || "audio"}.mp3`;
  }

  function saveBlob(blob, filename) {
    const url = URL.createObjectURL(blob);
    const link = document.createElement("a");
    link.href = url;
    link.download = filename;
    link.hidden = true;
    document.body.append(link);
    link.click();
    link.remove();
    // The download has its own copy once it started; give slow browsers a minute.
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  async function downloadMp3(job, button) {
    clearMessages();
    button.disabled = true;
    button.textContent = "Downloading…";
    try {
      const response = await api("GET", job.download_url, { headers: { Accept: "audio/mpeg" } });
      const blob = await response.blob();
      const filename = filenameFrom(response.headers.get("Content-Disposition")) || mp3Name(job.filename);
      saveBlob(blob, filename);
      showNotice(`Saved ${filename}.`);
    } catch (problem) {
      if (problem.status !== 401) showError(problem.message);
    } finally {
      button.disabled = false;
      button.textContent = "Download MP3";
    }
  }

  async function deleteJob(job, button) {
    const name = job.filename || "this conversion";
    if (!button.dataset.armed) {
      // A second click within a few seconds confirms: deleting removes the MP3 for good.
      button.dataset.armed = "yes";
      button.textContent = "Confirm delete";
      button.classList.add("armed");
      button.setAttribute("aria-label", `Confirm: delete ${name}`);
      setTimeout(() => disarm(button, name), 4000);
      return;
    }
    disarm(button, name);
    button.disabled = true;
    clearMessages();
    try {
      await api("DELETE", `/jobs/${encodeURIComponent(job.job_id)}`);
      showNotice(`Deleted ${name}.`);
      refreshJobs();
    } catch (problem) {
      if (problem.status !== 401) showError(problem.message);
    } finally {
      button.disabled = false;
    }
  }

  function disarm(button, name) {
    if (!button.dataset.armed) return;
    delete button.dataset.armed;
    button.textContent = "Delete";
    button.classList.remove("armed");
    button.setAttribute("aria-label", `Delete ${name}`);
  }

  // ---- start --------------------------------------------------------------

  el.loginForm.addEventListener("submit", logIn);
  el.logout.addEventListener("click", () => endSession("You are logged out."));
  el.uploadForm.addEventListener("submit", upload);
  el.uploadCancel.addEventListener("click", () => currentUpload && currentUpload.abort());
  el.refresh.addEventListener("click", () => {
    clearMessages();
    refreshJobs();
    refreshUsage();
  });
  for (const control of el.uploadForm.querySelectorAll("[data-fields]")) {
    control.addEventListener("change", () => control.removeAttribute("aria-invalid"));
  }
  setUpDropZone();

  session = loadSession();
  if (session) {
    startSession();
  } else {
    el.loginView.hidden = false;
    el.loginEmail.focus();
  }
})();

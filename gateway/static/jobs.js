// The job list: fetched again while a job runs, updated row by row in place, with a
// notice when a job finishes, a second click to confirm a delete, and done jobs picked
// with their boxes (or "Select all done") to download as one ZIP.

import { api } from "./api.js";
import { el } from "./dom.js";
import { downloadMp3, downloadTrack, downloadZip } from "./download.js";
import { ACTIVE, createRow, releaseRow, updateRow } from "./job-row.js";
import { clearMessages, showError, showNotice } from "./messages.js";
import { formatOf } from "./output-format.js";
import { currentSession } from "./session.js";
import { refreshUsage } from "./usage.js";

const POLL_MS = 1500;
const POLL_RETRY_MS = 5000;
const PAGE_SIZE = 50;

let pollTimer = null;
let refreshSeq = 0;
let zipping = false; // a ZIP is on its way: its button stays busy
let jobsSignature = null; // the job ids and states last shown: usage changes when they do
const rows = new Map(); // job_id -> <li>
const lastStatus = new Map(); // job_id -> status seen on the previous refresh

function schedulePoll(delay) {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(refreshJobs, delay);
}

export async function refreshJobs() {
  if (!currentSession()) return;
  clearTimeout(pollTimer);
  const seq = ++refreshSeq;
  let page;
  try {
    const response = await api("GET", `/jobs?limit=${PAGE_SIZE}`);
    page = await response.json();
  } catch (problem) {
    if (seq !== refreshSeq || !currentSession()) return;
    showError(problem.message);
    if ([...lastStatus.values()].some((status) => ACTIVE.has(status))) schedulePoll(POLL_RETRY_MS);
    return;
  }
  if (seq !== refreshSeq || !currentSession()) return; // a newer refresh or a logout overtook this one
  renderJobs(page.jobs, page.total);
  if (page.jobs.some((job) => ACTIVE.has(job.status))) schedulePoll(POLL_MS);
}

export function setUpJobList() {
  el.selectAllDone.addEventListener("change", () => {
    for (const row of doneRows()) row.parts.select.checked = el.selectAllDone.checked;
    showSelection();
  });
  el.zipDownload.addEventListener("click", async () => {
    const jobIds = selectedRows().map((row) => row.job.job_id);
    if (!jobIds.length || zipping) return;
    zipping = true;
    try {
      await downloadZip(jobIds, el.zipDownload);
    } finally {
      zipping = false;
      showSelection();
    }
  });
}

export function resetJobs() {
  clearTimeout(pollTimer);
  refreshSeq += 1; // answers still on their way belong to the old session
  jobsSignature = null;
  rows.forEach(releaseRow);
  rows.clear();
  lastStatus.clear();
  el.jobList.replaceChildren();
  showSelection();
}

function renderJobs(jobs, total) {
  const seen = new Set();
  jobs.forEach((job, index) => {
    seen.add(job.job_id);
    let row = rows.get(job.job_id);
    if (!row) {
      row = addRow();
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
      releaseRow(row);
      row.remove();
      rows.delete(jobId);
      lastStatus.delete(jobId);
    }
  }
  showSelection();
  el.jobsEmpty.hidden = jobs.length > 0;
  el.jobsMore.hidden = total <= jobs.length;
  el.jobsMore.textContent = `Showing the newest ${jobs.length} of ${total} conversions.`;
  // A job that came, went or finished changes what is stored and running; progress does not.
  const signature = `${total} ${jobs.map((job) => `${job.job_id}:${job.status}`).join(" ")}`;
  if (jobsSignature !== null && signature !== jobsSignature) refreshUsage();
  jobsSignature = signature;
}

function addRow() {
  const row = createRow();
  const { select, download, remove, tracks } = row.parts;
  select.addEventListener("change", showSelection);
  download.addEventListener("click", () => downloadMp3(row.job, download));
  tracks.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-track]");
    const track = button && row.job.tracks && row.job.tracks[Number(button.dataset.track)];
    if (track && !button.disabled) downloadTrack(row.job, track, button);
  });
  remove.addEventListener("click", () => deleteJob(row.job, remove));
  return row;
}

function doneRows() {
  return [...rows.values()].filter((row) => row.job.status === "done");
}

function selectedRows() {
  return doneRows().filter((row) => row.parts.select.checked);
}

// The ZIP bar shows once a job is done; its button names how many are picked.
function showSelection() {
  const done = doneRows().length;
  const picked = selectedRows().length;
  el.jobsBatch.hidden = done === 0;
  el.selectAllDone.checked = done > 0 && picked === done;
  el.selectAllDone.indeterminate = picked > 0 && picked < done;
  if (!zipping) {
    el.zipDownload.disabled = picked === 0;
    el.zipDownload.textContent = picked ? `Download ${picked} as ZIP` : "Download as ZIP";
  }
}

function announceChange(job) {
  const before = lastStatus.get(job.job_id);
  lastStatus.set(job.job_id, job.status);
  if (!before || before === job.status || !ACTIVE.has(before)) return;
  const name = job.filename || "Your file";
  if (job.status === "done") {
    showNotice(`${name} is converted: the ${formatOf(job).label} is ready to download.`);
  }
  if (job.status === "failed") {
    const reason = job.error ? `: ${job.error}` : ".";
    showNotice(`${name} could not be converted${reason}`, { warning: true });
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

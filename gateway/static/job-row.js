// One job of the list as a row: a box to pick it for a ZIP (done jobs only), its name,
// status, what was asked for, progress or error, and the Download and Delete buttons
// (jobs.js gives them their clicks).

import { formatBytes, formatClock, formatSeconds } from "./format.js";
import { formatOf } from "./output-format.js";

export const ACTIVE = new Set(["queued", "processing"]);
const STATUS_LABELS = {
  queued: "Queued",
  processing: "Converting",
  done: "Done",
  failed: "Failed",
};

function part(tag, className, parent) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (parent) parent.append(node);
  return node;
}

export function createRow() {
  const row = part("li", "job");
  const select = part("input", "job-select", row);
  select.type = "checkbox";
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
  download.textContent = "Download";
  const remove = part("button", "button ghost small danger", actions);
  remove.type = "button";
  remove.textContent = "Delete";
  row.parts = { select, name, badge, meta, progressLine, progress, progressText, error, download, remove };
  return row;
}

export function updateRow(row, job) {
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

  const done = job.status === "done";
  // Only a done job can be picked; app.css keeps the hidden box's room so names line up.
  p.select.hidden = !done;
  if (!done) p.select.checked = false;
  p.select.setAttribute("aria-label", `Select ${name} for a ZIP`);

  p.download.hidden = !done || !job.download_url;
  const output = formatOf(job).label;
  if (!p.download.disabled) p.download.textContent = `Download ${output}`;
  p.download.setAttribute("aria-label", `Download the ${output} of ${name}`);
  p.remove.setAttribute("aria-label", p.remove.dataset.armed ? `Confirm: delete ${name}` : `Delete ${name}`);
}

function describeJob(job) {
  const parts = [];
  if (job.created_at) {
    const created = new Date(job.created_at);
    const sameDay = created.toDateString() === new Date().toDateString();
    parts.push(
      sameDay
        ? formatClock(created)
        : created.toLocaleString([], { dateStyle: "medium", timeStyle: "short" }),
    );
  }
  if (job.size != null) parts.push(formatBytes(job.size));
  const o = job.options || {};
  const output = formatOf(job);
  parts.push(output.label);
  if (o.bitrate != null) parts.push(`${o.bitrate} kbit/s`);
  else if (o.quality != null) parts.push(`VBR V${o.quality}`);
  else if (output.bitrates) parts.push(output.encoding.replace(/^Default: /, ""));
  if (o.sample_rate != null) parts.push(`${o.sample_rate / 1000} kHz`);
  if (o.channels != null) parts.push(o.channels === 1 ? "mono" : "stereo");
  if (o.start != null || o.end != null) {
    parts.push(`${formatSeconds(o.start || 0)}–${o.end != null ? formatSeconds(o.end) : "end"}`);
  }
  const tags = [o.title, o.artist, o.album].filter(Boolean);
  if (tags.length) parts.push(`“${tags.join(" · ")}”`);
  return parts.join(" · ");
}

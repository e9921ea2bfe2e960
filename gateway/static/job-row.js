// One job of the list as a row: a box to pick it for a ZIP (done jobs only), its name,
// status, what was asked for, progress or error; once done, the loudness measured, a
// player with its waveform and the tracks of a split job; and the Download and Delete
// buttons (jobs.js gives them, and the tracks' buttons, their clicks).

import { formatBytes, formatLevel, formatMoment, formatSeconds } from "./format.js";
import { formatOf } from "./output-format.js";
import { createPlayer, releasePlayer, updatePlayer } from "./player.js";

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
  const loudness = part("p", "job-loudness", main);
  const player = createPlayer(main);
  const tracks = part("ol", "job-tracks", main);
  const actions = part("div", "job-actions", row);
  const download = part("button", "button primary small", actions);
  download.type = "button";
  download.textContent = "Download";
  const remove = part("button", "button ghost small danger", actions);
  remove.type = "button";
  remove.textContent = "Delete";
  row.parts = {
    select, name, badge, meta, progressLine, progress, progressText, error,
    loudness, player, tracks, download, remove,
  };
  return row;
}

// Let go of what a row holds beyond its elements (its player's audio): it leaves the list.
export function releaseRow(row) {
  releasePlayer(row.parts.player);
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

  showLoudness(p.loudness, done ? job.loudness : null);
  updatePlayer(p.player, job);
  showTracks(p.tracks, job, done ? job.tracks : null);
}

// "Loudness −31.2 → −16.0 LUFS", the source's and the output's, and the true peaks beside;
// the target and the loudness ranges in its title.
function showLoudness(line, measured) {
  const shown = Boolean(measured) && Number.isFinite(measured.input_i) && Number.isFinite(measured.output_i);
  line.hidden = !shown;
  if (!shown) return;
  const change = (name, unit) => {
    const [before, after] = [measured[`input_${name}`], measured[`output_${name}`]];
    if (!Number.isFinite(before) || !Number.isFinite(after)) return null;
    return `${formatLevel(before)} → ${formatLevel(after)} ${unit}`;
  };
  const label = document.createElement("span");
  label.className = "muted";
  label.textContent = "Loudness ";
  const figures = document.createElement("strong");
  figures.textContent = change("i", "LUFS");
  const rest = document.createElement("span");
  rest.className = "muted";
  rest.textContent = change("tp", "dBTP") ? ` · true peak ${change("tp", "dBTP")}` : "";
  const range = change("lra", "LU");
  line.title = [
    Number.isFinite(measured.target) ? `Target ${formatLevel(measured.target)} LUFS` : null,
    range && `loudness range ${range}`,
  ].filter(Boolean).join(", ");
  line.replaceChildren(label, figures, rest);
}

// List a split job's tracks, each with its Download button (data-track: its index); built
// again only when the tracks change, so a poll does not take focus off a button.
function showTracks(list, job, tracks) {
  const shown = Array.isArray(tracks) && tracks.length > 0;
  list.hidden = !shown;
  const signature = shown ? tracks.map((track) => track.fid).join(" ") : "";
  if (list.dataset.signature === signature) return;
  list.dataset.signature = signature;
  const name = job.filename || "this conversion";
  list.setAttribute("aria-label", `Tracks of ${name}`);
  list.replaceChildren(
    ...(shown ? tracks : []).map((track, index) => {
      const item = document.createElement("li");
      const number = part("span", "track-number muted", item);
      number.textContent = `${track.number}.`;
      const title = part("span", "track-title", item);
      title.textContent = track.title || `Track ${track.number}`;
      title.title = title.textContent;
      const length = part("span", "track-length muted", item);
      length.textContent = Number.isFinite(track.duration) ? formatSeconds(Math.round(track.duration)) : "";
      const size = part("span", "track-size muted", item);
      size.textContent = formatBytes(track.size);
      const download = part("button", "button ghost small", item);
      download.type = "button";
      download.dataset.track = String(index);
      download.textContent = "Download";
      download.setAttribute("aria-label", `Download track ${track.number}: ${title.textContent}`);
      return item;
    }),
  );
}

function describeJob(job) {
  const parts = [];
  if (job.created_at) parts.push(formatMoment(new Date(job.created_at)));
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
  if (o.loudness != null) parts.push(`${formatLevel(o.loudness).replace(/\.0$/, "")} LUFS`);
  if (o.cover === "frame" || (o.cover == null && o.cover_at != null)) {
    parts.push(o.cover_at != null ? `cover at ${formatSeconds(o.cover_at)}` : "cover");
  }
  if (o.split === "chapters") parts.push("a track per chapter");
  else if (o.split != null) parts.push(`tracks of ${formatSeconds(o.split)}`);
  const tags = [o.title, o.artist, o.album].filter(Boolean);
  if (tags.length) parts.push(`“${tags.join(" · ")}”`);
  return parts.join(" · ");
}

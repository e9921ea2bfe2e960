// Saving a finished job's output (MP3 or the format it asked for), one of its tracks,
// several jobs' as one ZIP, or the account's export: fetched with the token (a plain link
// could not send it), then handed to the browser as a download under the server's name.

import { api } from "./api.js";
import { clearMessages, showError, showNotice } from "./messages.js";
import { formatOf } from "./output-format.js";

export async function downloadMp3(job, button) {
  await downloadAudio(job.download_url, outputName(job), button);
  button.textContent = `Download ${formatOf(job).label}`;
}

// Save one track of a split job (an item of its ``tracks``).
export async function downloadTrack(job, track, button) {
  const label = button.textContent;
  const stem = outputName(job).replace(/\.[^.]*$/, "");
  const fallback = track.filename || `${stem} - ${track.number}.${formatOf(job).extension}`;
  await downloadAudio(trackUrl(job, track), fallback, button);
  button.textContent = label;
}

// A track downloads as the job's output does, by its own fid.
function trackUrl(job, track) {
  const url = new URL(job.download_url, window.location.href);
  url.searchParams.set("fid", track.fid);
  return `${url.pathname}${url.search}`;
}

// Save the audio at ``path`` under the server's name for it, else ``fallbackName``.
async function downloadAudio(path, fallbackName, button) {
  button.textContent = "Downloading…";
  await saveDownload(path, { accept: "audio/*", fallbackName, button });
}

// Save the outputs of the done jobs ``jobIds`` as one ZIP. The caller owns the button's
// state afterwards: what it offers depends on the selection at that time.
export async function downloadZip(jobIds, button) {
  button.textContent = "Preparing ZIP…";
  const query = jobIds.map((id) => `job_id=${encodeURIComponent(id)}`).join("&");
  const files = jobIds.length === 1 ? "1 conversion" : `${jobIds.length} conversions`;
  await saveDownload(`/download.zip?${query}`, {
    accept: "application/zip",
    fallbackName: "video2mp3.zip",
    button,
    keepDisabled: true,
    saved: (filename) => `Saved ${filename} (${files}).`,
  });
}

// Save everything the account holds (GET /me/export) as the JSON file the server names.
export async function downloadExport(button) {
  await saveDownload("/me/export", {
    accept: "application/json",
    fallbackName: "video2mp3-export.json",
    button,
  });
}

// Fetch ``path`` with the token and hand it to the browser as a file, under the name the
// server gives it (else ``fallbackName``); ``button`` is disabled meanwhile, and enabled
// again afterwards unless ``keepDisabled``.
async function saveDownload(path, { accept, fallbackName, button, keepDisabled = false, saved }) {
  clearMessages();
  button.disabled = true;
  try {
    const response = await api("GET", path, { headers: { Accept: accept } });
    const blob = await response.blob();
    const filename = filenameFrom(response.headers.get("Content-Disposition")) || fallbackName;
    saveBlob(blob, filename);
    showNotice(saved ? saved(filename) : `Saved ${filename}.`);
  } catch (problem) {
    if (problem.status !== 401) showError(problem.message);
  } finally {
    if (!keepDisabled) button.disabled = false;
  }
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

function outputName(job) {
  const stem = (job.filename || "audio").replace(/^.*[\\/]/, "").replace(/\.[^.]*$/, "");
  return `${stem || "audio"}.${formatOf(job).extension}`;
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

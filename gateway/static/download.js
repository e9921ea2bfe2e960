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
  clearMessages();
  button.disabled = true;
  button.textContent = "Downloading…";
  try {
    const response = await api("GET", path, { headers: { Accept: "audio/*" } });
    const blob = await response.blob();
    const filename = filenameFrom(response.headers.get("Content-Disposition")) || fallbackName;
    saveBlob(blob, filename);
    showNotice(`Saved ${filename}.`);
  } catch (problem) {
    if (problem.status !== 401) showError(problem.message);
  } finally {
    button.disabled = false;
  }
}

// Save the outputs of the done jobs ``jobIds`` as one ZIP. The caller owns the button's
// state afterwards: what it offers depends on the selection at that time.
export async function downloadZip(jobIds, button) {
  clearMessages();
  button.disabled = true;
  button.textContent = "Preparing ZIP…";
  try {
    const query = jobIds.map((id) => `job_id=${encodeURIComponent(id)}`).join("&");
    const response = await api("GET", `/download.zip?${query}`, { headers: { Accept: "application/zip" } });
    const blob = await response.blob();
    const filename = filenameFrom(response.headers.get("Content-Disposition")) || "video2mp3.zip";
    saveBlob(blob, filename);
    const files = jobIds.length === 1 ? "1 conversion" : `${jobIds.length} conversions`;
    showNotice(`Saved ${filename} (${files}).`);
  } catch (problem) {
    if (problem.status !== 401) showError(problem.message);
  }
}

// Save everything the account holds (GET /me/export) as the JSON file the server names.
export async function downloadExport(button) {
  clearMessages();
  button.disabled = true;
  try {
    const response = await api("GET", "/me/export");
    const blob = await response.blob();
    const filename = filenameFrom(response.headers.get("Content-Disposition")) || "video2mp3-export.json";
    saveBlob(blob, filename);
    showNotice(`Saved ${filename}.`);
  } catch (problem) {
    if (problem.status !== 401) showError(problem.message);
  } finally {
    button.disabled = false;
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

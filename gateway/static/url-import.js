// "From a link": the server fetches the video at the URL (POST /jobs) and converts it with
// the options chosen in the form, so nothing goes through this browser; a refusal is shown
// on the field the server names, and a fetch that fails later shows in the job list.

import { api } from "./api.js";
import { el } from "./dom.js";
import { refreshJobs } from "./jobs.js";
import { clearMessages, showError, showNotice } from "./messages.js";
import { markInvalid, optionFields } from "./upload.js";
import { refreshUsage } from "./usage.js";

export function setUpUrlImport() {
  el.urlButton.addEventListener("click", importUrl);
  // Enter in the link field imports the link rather than submitting the upload form.
  el.urlInput.addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    event.preventDefault();
    importUrl();
  });
}

async function importUrl() {
  const url = el.urlInput.value.trim();
  clearMessages();
  markInvalid(null);
  if (!url) {
    showError("Paste the video's http:// or https:// link first.");
    markInvalid("url");
    return;
  }
  const fields = optionFields();
  if (!fields) return;
  el.urlButton.disabled = true;
  try {
    await api("POST", "/jobs", {
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ url, options: Object.fromEntries(fields) }),
    });
    showNotice(`Queued ${url}: the server fetches it and converts it.`);
    el.urlInput.value = "";
    // A title names one recording; the other options often suit the next video too.
    el.title.value = "";
    refreshJobs();
  } catch (problem) {
    if (problem.status === 401) return; // the session ended; the login form says so
    showError(problem.message);
    markInvalid(problem.field);
    // Refused by a quota: show the figures the refusal was about.
    if (problem.status === 429 || problem.status === 507) refreshUsage();
  } finally {
    el.urlButton.disabled = false;
  }
}

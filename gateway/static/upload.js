// The upload form: a file from the picker or dropped on the zone, sent with its options
// through XMLHttpRequest (fetch cannot report upload progress), cancellable, with a
// refusal shown on the field the server names.

import { bearerAuthorization, endRejectedSession, problemFrom } from "./api.js";
import { el } from "./dom.js";
import { formatBytes } from "./format.js";
import { refreshJobs } from "./jobs.js";
import { clearMessages, showError, showNotice } from "./messages.js";
import { currentSession } from "./session.js";
import { refreshUsage } from "./usage.js";

let chosenFile = null;
let currentUpload = null; // the XMLHttpRequest while an upload runs

export function setUpUploadForm() {
  el.uploadForm.addEventListener("submit", upload);
  el.uploadCancel.addEventListener("click", cancelUpload);
  for (const control of el.uploadForm.querySelectorAll("[data-fields]")) {
    control.addEventListener("change", () => control.removeAttribute("aria-invalid"));
  }
  setUpDropZone();
}

export function cancelUpload() {
  if (currentUpload) currentUpload.abort();
}

export function chooseFile(file) {
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
  xhr.setRequestHeader("Authorization", bearerAuthorization());
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
      el.title.value = "";
      refreshJobs();
    } else if (xhr.status === 401) {
      endRejectedSession();
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
    if (currentSession()) showNotice("Upload cancelled.");
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

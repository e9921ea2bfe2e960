// The upload form: a file from the picker or dropped on the zone, sent with its options as
// a resumable tus upload (tus-upload.js) that shows its speed and time left, survives a
// dropped line, resumes when the same file is sent again after a reload, and is
// cancellable; a refusal is shown on the field the server names.

import { bearerAuthorization, endRejectedSession, problemFrom } from "./api.js";
import { el } from "./dom.js";
import { formatBytes, formatDelay } from "./format.js";
import { refreshJobs } from "./jobs.js";
import { clearMessages, showError, showNotice } from "./messages.js";
import { OptionProblem, outputOptionFields, wholeVideoReason } from "./output-options.js";
import { currentSession } from "./session.js";
import { audioTrackOf } from "./soundtrack.js";
import { fingerprintOf, startResumableUpload } from "./tus-upload.js";
import { TransferRate, describeProgress } from "./upload-progress.js";
import { refreshUsage } from "./usage.js";

let chosenFile = null;
// The upload under way: {file, handle (from startResumableUpload, once started), halted
// ("cancel" or "stop" once asked to end), verb (of its label), sent and total (bytes, as
// last reported)}.
let currentUpload = null;
const rate = new TransferRate();

export function setUpUploadForm() {
  el.uploadForm.addEventListener("submit", upload);
  el.uploadCancel.addEventListener("click", cancelUpload);
  for (const control of el.uploadForm.querySelectorAll("[data-fields]")) {
    control.addEventListener("change", () => control.removeAttribute("aria-invalid"));
  }
  setUpDropZone();
}

// Stop the upload under way when the session ends: the server keeps what it has and this
// browser the upload's URL, so the same file resumes after the next log-in.
export function stopUpload() {
  haltUpload("stop");
}

// Stop the upload under way and remove it from the server and from this browser.
function cancelUpload() {
  if (haltUpload("cancel")) showNotice("Upload cancelled.");
}

// End the upload under way with its handle's cancel() or stop(); return whether one was.
function haltUpload(how) {
  const halted = currentUpload;
  if (!halted) return false;
  halted.halted = how;
  if (halted.handle) halted.handle[how]();
  finishUpload({ succeeded: false });
  return true;
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

// Return the chosen options as [name, value] pairs, or null when one is refused here: the
// refusal is then shown on its field, as the server's would be.
export function optionFields() {
  const fields = [];
  const [name, value] = el.encoding.value.split(":");
  if (value) fields.push([name, value]);
  for (const input of el.uploadForm.querySelectorAll(".options [name]")) {
    const text = input.value.trim();
    if (text) fields.push([input.name, text]);
  }
  try {
    fields.push(...outputOptionFields());
  } catch (problem) {
    if (!(problem instanceof OptionProblem)) throw problem;
    showError(problem.message);
    markInvalid(problem.field);
    return null;
  }
  return fields;
}

export function markInvalid(field) {
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

// What goes to the server for `file` with the chosen option `fields`: the body, the tus
// metadata (its name and the options, as POST /upload takes them as form fields), and
// whether the body is the file's audio track alone rather than the whole file. The one place
// that decides it, before any byte is sent; the resume fingerprint is taken from the
// original file, the fields and `audioOnly`.
// A phone video's sound is copied out in the browser (soundtrack.js) and sent alone, under
// the video's name, with the trim shifted to the copy's times; anything else, or with "Upload
// the whole video" ticked, or with options that need the picture or the container (a cover,
// chapters), goes whole. The server checks the copy like any upload.
async function prepareUpload(file, fields) {
  const options = Object.fromEntries(fields);
  const whole = { body: file, metadata: { filename: file.name, ...options }, audioOnly: false };
  if (el.fullUpload.checked || wholeVideoReason(options)) return whole;
  const track = await audioTrackOf(file, { start: options.start, end: options.end });
  if (!track) return whole;
  const { start: _start, end: _end, ...untrimmed } = options;
  const metadata = { filename: file.name, ...untrimmed, ...track.options };
  return { body: track.blob, metadata, audioOnly: true };
}

function showUploadProgress(sent, total) {
  el.uploadBar.value = total ? Math.floor((sent / total) * 100) : 0;
  el.uploadDetail.textContent = describeProgress(sent, total, rate.perSecond());
}

function finishUpload({ succeeded }) {
  currentUpload = null;
  rate.reset();
  el.uploadButton.disabled = !chosenFile;
  el.uploadCancel.hidden = true;
  setTimeout(() => {
    if (!currentUpload) el.uploadProgress.hidden = true;
  }, succeeded ? 3000 : 0);
}

async function upload(event) {
  event.preventDefault();
  if (!chosenFile || currentUpload) return;
  clearMessages();
  markInvalid(null);
  const file = chosenFile;
  const fields = optionFields();
  if (!fields) return;
  const running = { file, handle: null, halted: null, verb: "Uploading", sent: 0, total: 0 };
  currentUpload = running;
  el.uploadLabel.textContent = `Uploading ${file.name}`;
  el.uploadBar.value = 0;
  el.uploadDetail.textContent = "";
  el.uploadProgress.hidden = false;
  el.uploadCancel.hidden = false;
  el.uploadButton.disabled = true;

  try {
    await sendResumably(running, fields);
  } catch (error) {
    if (currentUpload !== running) return;
    finishUpload({ succeeded: false });
    showError(`The upload could not start: ${error.message}`);
  }
}

async function sendResumably(running, fields) {
  const { file } = running;
  el.uploadLabel.textContent = `Preparing ${file.name}…`;
  const sending = await prepareUpload(file, fields);
  // Said in the label while it goes and in the notice when it is done.
  let described = file.name;
  const reason = wholeVideoReason(sending.metadata);
  if (reason) described = `${file.name} (the whole video, for ${reason})`;
  if (sending.audioOnly) {
    running.verb = "Uploading the sound of";
    const sizes = `${formatBytes(sending.body.size)} of ${formatBytes(file.size)}`;
    described = `${file.name} (only its sound: ${sizes})`;
  }
  const fingerprint = await fingerprintOf({
    user: currentSession().email,
    file,
    fields,
    audioOnly: sending.audioOnly,
  });
  if (running.halted) return;
  running.handle = await startResumableUpload({
    body: sending.body,
    metadata: sending.metadata,
    fingerprint,
    authorization: bearerAuthorization(),
    on: {
      progress(sent, total) {
        if (currentUpload !== running) return;
        el.uploadLabel.textContent =
          sent < total ? `${running.verb} ${file.name}` : "Uploaded, waiting for the server…";
        Object.assign(running, { sent, total });
        rate.add(sent);
        showUploadProgress(sent, total);
      },
      retrying(delayMs) {
        if (currentUpload !== running) return;
        const delay = formatDelay(Math.ceil(delayMs / 1000));
        el.uploadLabel.textContent = `Connection lost: trying again ${delay}…`;
        rate.reset(); // no speed while the line is down
        showUploadProgress(running.sent, running.total);
      },
      done() {
        if (currentUpload !== running) return;
        el.uploadLabel.textContent = `Uploaded ${file.name}`;
        showUploadProgress(sending.body.size, sending.body.size);
        showNotice(`Uploaded ${described}. Converting it now.`);
        finishUpload({ succeeded: true });
        chooseFile(null);
        // A title names one recording; the other options often suit the next file too.
        el.title.value = "";
        refreshJobs();
      },
      failed(answer) {
        if (currentUpload !== running) return;
        finishUpload({ succeeded: false });
        if (answer.status === 0) {
          showError(
            "The upload stopped: the connection to the server was lost. " +
              "Upload the same file again to continue where it stopped.",
          );
        } else if (answer.status === 401) {
          endRejectedSession(problemFrom(answer.status, answer.statusText, answer.body, null).code);
        } else {
          const { status, statusText, body, retryAfter } = answer;
          const problem = problemFrom(status, statusText, body, retryAfter);
          showError(problem.message);
          markInvalid(problem.field);
          // Refused by a quota: show the figures the refusal was about.
          if (answer.status === 429 || answer.status === 507) refreshUsage();
        }
      },
    },
  });
  if (running.halted) {
    running.handle[running.halted](); // halted while the upload was being looked up
  } else if (running.handle.resumed) {
    running.verb = sending.audioOnly ? "Resuming the sound of" : "Resuming";
    el.uploadLabel.textContent = `${running.verb} ${file.name}`;
  }
}

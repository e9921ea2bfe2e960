// Loudness, cover art and tracks: the options beside the format, each a select with an
// optional text box (a loudness of one's own, the cover's time, the parts' length). They
// are checked here as the server checks them (common/options.py), so a typo is named
// before a byte is sent; the server still checks every field. A cover (a frame of the
// picture) and chapters (the container's) need the whole video, so choosing them ticks
// "Upload the whole video" and says why.

import { el } from "./dom.js";
import { formatSeconds, parseTime } from "./format.js";

// The server's bounds: ffmpeg's loudnorm targets, the shortest part, the longest time.
export const LOUDNESS_RANGE_LUFS = [-70, -5];
export const MIN_SPLIT_SECONDS = 10;
const MAX_SECONDS = 48 * 3600;
const LUFS = /^\s*[-+]?\d+(?:\.\d+)?\s*$/;
const TIME_EXAMPLE = "like 90, 1:30 or 1:02:03";
const EXTRAS_HINT = "Loudness is integrated loudness (EBU R128); parts last at least 0:10.";
const WAV_HINT = "WAV has no place for cover art: choose another format for a cover.";

// A choice the page refuses before sending, named by the field the server would name.
export class OptionProblem extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

let ownFullUpload = false; // the box as the user left it, while the options tick it

export function setUpOutputOptions() {
  for (const select of [el.format, el.loudness, el.cover, el.split]) {
    select.addEventListener("change", applyChoices);
  }
  el.fullUpload.addEventListener("change", () => {
    ownFullUpload = el.fullUpload.checked;
  });
  el.fullUploadHint.dataset.plain = el.fullUploadHint.textContent;
  applyChoices();
}

function applyChoices() {
  const wav = el.format.value === "wav";
  if (wav) el.cover.value = "";
  el.cover.disabled = wav;
  el.extrasHint.textContent = wav ? WAV_HINT : EXTRAS_HINT;
  showBeside(el.loudness, el.loudnessCustom, el.loudness.value === "custom");
  showBeside(el.cover, el.coverAt, el.cover.value === "frame");
  showBeside(el.split, el.splitEvery, el.split.value === "every");

  const reason = wholeVideoReason({ cover: el.cover.value, split: el.split.value });
  el.fullUpload.checked = Boolean(reason) || ownFullUpload;
  el.fullUpload.disabled = Boolean(reason);
  el.fullUploadHint.textContent = reason
    ? `(needed for ${reason}: only the video itself has them)`
    : el.fullUploadHint.dataset.plain;
}

// Show a select's text box only with the choice that takes it; a hidden one is not sent.
function showBeside(select, input, shown) {
  input.hidden = !shown;
  select.parentElement.classList.toggle("with-input", shown);
  if (!shown) input.removeAttribute("aria-invalid");
}

// Say why options (as sent: cover, cover_at, split) need the video itself rather than the
// copy of its sound the page sends otherwise ("its cover", "its chapters", or both), or
// return null: a cover is a frame of the picture, and chapters are the container's. The
// server's rule is Options.needs_whole_video.
export function wholeVideoReason({ cover, cover_at: coverAt, split } = {}) {
  const wantsCover = cover === "frame" || (!cover && Boolean(coverAt));
  const chapters = split === "chapters";
  if (wantsCover && chapters) return "its cover and chapters";
  if (wantsCover) return "its cover";
  return chapters ? "its chapters" : null;
}

// Return the fields to send for loudness, cover and split as [name, value] pairs.
//
// Raises:
//   OptionProblem: a value the server would refuse, with the field it would name.
export function outputOptionFields() {
  const fields = [];
  const loudness = el.loudness.value === "custom" ? el.loudnessCustom.value : el.loudness.value;
  if (el.loudness.value) fields.push(["loudness", checkLoudness(loudness)]);
  if (el.cover.value === "frame") {
    fields.push(["cover", "frame"]);
    const at = el.coverAt.value.trim();
    if (at) fields.push(["cover_at", checkTime("cover_at", "The cover's time", at)]);
  }
  if (el.split.value === "chapters") fields.push(["split", "chapters"]);
  if (el.split.value === "every") fields.push(["split", checkPartLength(el.splitEvery.value)]);
  return fields;
}

// Return a loudness in LUFS as typed, trimmed, if the server takes it.
export function checkLoudness(text) {
  const [low, high] = LOUDNESS_RANGE_LUFS;
  const value = LUFS.test(text) ? Number(text) : NaN;
  if (!(value >= low && value <= high)) {
    throw new OptionProblem(
      "loudness",
      `Loudness must be a number of LUFS from ${low} to ${high}, such as -16; got “${text.trim()}”.`,
    );
  }
  return text.trim();
}

// Return a part length as typed, trimmed, if it is a time of at least MIN_SPLIT_SECONDS.
export function checkPartLength(text) {
  const seconds = parseTime(text);
  if (seconds === null) {
    throw new OptionProblem("split", "Type how long each part lasts, such as 10:00.");
  }
  checkTime("split", "A part's length", text);
  if (seconds < MIN_SPLIT_SECONDS) {
    throw new OptionProblem(
      "split",
      `Parts must last at least ${MIN_SPLIT_SECONDS} seconds (${formatSeconds(MIN_SPLIT_SECONDS)}).`,
    );
  }
  return text.trim();
}

function checkTime(field, what, text) {
  const seconds = parseTime(text);
  if (Number.isNaN(seconds)) {
    throw new OptionProblem(field, `${what} must be a time ${TIME_EXAMPLE}; got “${text.trim()}”.`);
  }
  if (seconds > MAX_SECONDS) {
    throw new OptionProblem(field, `${what} must be at most ${MAX_SECONDS / 3600} hours.`);
  }
  return text.trim();
}

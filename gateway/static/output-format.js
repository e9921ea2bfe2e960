// The output formats as the page shows them, and the Format select's hold on the others:
// each format takes its own encodings and sample rates (the server's rules are
// common/options.py FORMATS), so what does not apply is disabled and the Quality
// select's default says what the format does. The server still checks every field.

import { el } from "./dom.js";

const OPUS_RATES = [8000, 12000, 16000, 24000, 48000];

// label: how the page names it; extension: of the saved file; encoding: what the Quality
// select's default says; bitrates: the kbit/s range it takes (null: lossless, none);
// vbr: whether it takes a VBR quality; sampleRates: the only rates it takes (null: all).
export const FORMATS = {
  mp3: { label: "MP3", extension: "mp3", encoding: "Default: 192 kbit/s", bitrates: [32, 320], vbr: true, sampleRates: null },
  m4a: { label: "M4A", extension: "m4a", encoding: "Default: 192 kbit/s AAC", bitrates: [16, 320], vbr: false, sampleRates: null },
  opus: { label: "Opus", extension: "opus", encoding: "Default: 128 kbit/s Opus", bitrates: [6, 510], vbr: false, sampleRates: OPUS_RATES },
  flac: { label: "FLAC", extension: "flac", encoding: "Lossless: no bitrate", bitrates: null, vbr: false, sampleRates: null },
  wav: { label: "WAV", extension: "wav", encoding: "Lossless: 16-bit PCM", bitrates: null, vbr: false, sampleRates: null },
};

// The format of a job's output: the one it asked for, MP3 when it asked for none.
export function formatOf(job) {
  return FORMATS[(job && job.options && job.options.format) || "mp3"] || FORMATS.mp3;
}

export function setUpFormatChoice() {
  el.format.addEventListener("change", applyFormat);
  applyFormat();
}

function applyFormat() {
  const format = FORMATS[el.format.value] || FORMATS.mp3;
  el.encoding.querySelector('option[value=""]').textContent = format.encoding;
  for (const option of el.encoding.querySelectorAll('option[value*=":"]')) {
    const [name, value] = option.value.split(":");
    const kbps = Number(value);
    const allowed = name === "quality" ? format.vbr : Boolean(format.bitrates) && kbps >= format.bitrates[0] && kbps <= format.bitrates[1];
    option.disabled = !allowed;
  }
  for (const group of el.encoding.querySelectorAll("optgroup")) {
    group.disabled = [...group.querySelectorAll("option")].every((option) => option.disabled);
  }
  el.encoding.disabled = !format.bitrates;
  for (const option of el.sampleRate.querySelectorAll('option:not([value=""])')) {
    option.disabled = Boolean(format.sampleRates) && !format.sampleRates.includes(Number(option.value));
  }
  // A choice the new format does not take falls back to the default rather than being sent.
  for (const select of [el.encoding, el.sampleRate]) {
    const chosen = select.selectedOptions[0];
    if (chosen && (chosen.disabled || chosen.parentElement.disabled)) select.value = "";
  }
}

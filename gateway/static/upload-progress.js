// How an upload is going, in words: bytes sent of the total, the speed over the last few
// seconds and the time left at that speed ("12 MB of 80 MB · 2.1 MB/s · about 32 s left").
// No DOM, no state but the meter's own.

import { formatBytes } from "./format.js";

// Long enough to smooth the bursts of a chunked upload, short enough to follow a line
// that slows down.
const WINDOW_MS = 5000;
// Below this much of a window the figures would jump about: show none yet.
const SETTLED_MS = 1000;

export class TransferRate {
  constructor() {
    this.samples = []; // [time in ms, bytes sent], oldest first
  }

  // Note `sent` bytes at `now`; bytes going backwards (a retry from the server's offset)
  // start the measure afresh.
  add(sent, now = performance.now()) {
    const last = this.samples[this.samples.length - 1];
    if (last && sent < last[1]) this.samples = [];
    this.samples.push([now, sent]);
    while (this.samples.length > 2 && now - this.samples[1][0] >= WINDOW_MS) this.samples.shift();
  }

  reset() {
    this.samples = [];
  }

  // Bytes a second over the window, or null until it has lasted SETTLED_MS.
  perSecond() {
    if (this.samples.length < 2) return null;
    const [firstTime, firstSent] = this.samples[0];
    const [lastTime, lastSent] = this.samples[this.samples.length - 1];
    if (lastTime - firstTime < SETTLED_MS) return null;
    return ((lastSent - firstSent) * 1000) / (lastTime - firstTime);
  }
}

export function formatTimeLeft(seconds) {
  if (seconds < 5) return "a few seconds left";
  if (seconds < 60) return `about ${Math.round(seconds / 5) * 5} s left`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 90) return `about ${minutes} min left`;
  return `about ${Math.floor(minutes / 60)} h ${minutes % 60} min left`;
}

export function describeProgress(sent, total, bytesPerSecond) {
  const parts = [`${formatBytes(sent)} of ${formatBytes(total)}`];
  if (bytesPerSecond != null && sent < total) {
    parts.push(`${formatBytes(Math.round(bytesPerSecond))}/s`);
    if (bytesPerSecond > 0) parts.push(formatTimeLeft((total - sent) / bytesPerSecond));
  }
  return parts.join(" · ");
}

// A waveform drawn on a canvas: one bar a few pixels wide per slice of the output, as tall
// as the loudest peak in it, mirrored about the middle; the part already played in the
// canvas's CSS color, the rest in its --wave-rest. Drawn in device pixels, so it stays
// crisp on a HiDPI screen and at any zoom.

// The most peaks a waveform keeps: far more than any row is pixels wide.
export const MAX_PEAKS = 10_000;
const BAR_CSS_PX = 2;
const GAP_CSS_PX = 1;

// Return the peaks of a waveform answer as numbers from 0 to 1 (anything else read as 0),
// at most MAX_PEAKS of them; an answer without a list gives none.
export function peaksOf(answer) {
  const peaks = answer && Array.isArray(answer.peaks) ? answer.peaks.slice(0, MAX_PEAKS) : [];
  return peaks.map((peak) => (Number.isFinite(peak) ? Math.min(1, Math.max(0, peak)) : 0));
}

// Return ``columns`` levels from ``peaks``: each the largest peak of its share of them (or,
// with fewer peaks than columns, the peak it falls on).
export function columnLevels(peaks, columns) {
  const levels = new Array(columns).fill(0);
  if (!peaks.length) return levels;
  for (let column = 0; column < columns; column += 1) {
    const from = Math.floor((column * peaks.length) / columns);
    const to = Math.max(from + 1, Math.floor(((column + 1) * peaks.length) / columns));
    let level = 0;
    for (let i = from; i < to; i += 1) level = Math.max(level, peaks[i]);
    levels[column] = level;
  }
  return levels;
}

// Draw ``peaks`` on ``canvas`` at its laid-out size, the first ``played`` (0 to 1) of it
// in the played color. A waveform not known yet is a flat line.
export function drawWaveform(canvas, peaks, played) {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.round(canvas.clientWidth * ratio);
  const height = Math.round(canvas.clientHeight * ratio);
  if (!width || !height) return; // not laid out: drawn when it is (its ResizeObserver)
  if (canvas.width !== width) canvas.width = width;
  if (canvas.height !== height) canvas.height = height;
  const style = getComputedStyle(canvas);
  const playedColor = style.color;
  const restColor = style.getPropertyValue("--wave-rest").trim() || "gray";
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, width, height);

  const bar = Math.max(1, Math.round(BAR_CSS_PX * ratio));
  const step = bar + Math.max(1, Math.round(GAP_CSS_PX * ratio));
  const columns = Math.max(1, Math.floor((width + step - bar) / step));
  const levels = columnLevels(peaks, columns);
  const playedUpTo = played * width;
  const least = Math.max(1, Math.round(ratio)); // silence still shows as a line
  levels.forEach((level, column) => {
    const x = column * step;
    const barHeight = Math.max(least, Math.round(level * height));
    context.fillStyle = x + bar / 2 <= playedUpTo ? playedColor : restColor;
    context.fillRect(x, Math.round((height - barHeight) / 2), bar, barHeight);
  });
}

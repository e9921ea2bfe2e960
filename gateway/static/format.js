// Sizes, times and delays as the page writes them. No DOM, no state.

const DECIMAL_UNITS = ["bytes", "KB", "MB", "GB", "TB"];
// Quotas are set in binary units (10 GiB = 10 × 2³⁰ bytes): show them as set.
const BINARY_UNITS = ["bytes", "KiB", "MiB", "GiB", "TiB"];

function scaleBytes(bytes, base, units) {
  let value = bytes;
  let unit = 0;
  while (value >= base && unit < units.length - 1) {
    value /= base;
    unit += 1;
  }
  return unit === 0 ? `${value} bytes` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function formatBytes(bytes) {
  return bytes == null ? "" : scaleBytes(bytes, 1000, DECIMAL_UNITS);
}

export function formatBinaryBytes(bytes) {
  return scaleBytes(bytes, 1024, BINARY_UNITS);
}

export function formatClock(date) {
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// A moment as a list shows it: the time alone today, else the date and time.
export function formatMoment(date) {
  return date.toDateString() === new Date().toDateString()
    ? formatClock(date)
    : date.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

export function formatDelay(seconds) {
  if (seconds <= 0) return "now";
  if (seconds < 90) return `in ${seconds} s`;
  if (seconds < 90 * 60) return `in ${Math.ceil(seconds / 60)} min`;
  return `at ${formatClock(new Date(Date.now() + seconds * 1000))}`;
}

export function formatSeconds(seconds) {
  const whole = Math.floor(seconds);
  const fraction = seconds - whole;
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = whole % 60;
  const tail = fraction ? fraction.toFixed(2).slice(1).replace(/0+$/, "") : "";
  const ss = `${String(s).padStart(2, "0")}${tail}`;
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

const TIME = /^\s*(?:(?:(\d+):)?(\d{1,2}):)?(\d+(?:\.\d+)?)\s*$/;

// Read a time as the server reads one (common/options.py): seconds ("90.5") or a clock
// ("1:30", "1:02:03"). Return seconds, null for an empty text, NaN for anything else.
export function parseTime(text) {
  if (text == null || String(text).trim() === "") return null;
  const match = TIME.exec(String(text));
  if (!match) return NaN;
  const [hours, minutes, seconds] = match.slice(1).map((part) => Number(part || 0));
  if ((match[2] && seconds >= 60) || (match[1] && minutes >= 60)) return NaN;
  return hours * 3600 + minutes * 60 + seconds;
}

// A loudness or level in dB as a reader writes it: one decimal, a true minus sign.
export function formatLevel(value) {
  return value.toFixed(1).replace(/^-/, "\u2212");
}

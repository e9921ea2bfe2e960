// The usage line under the upload form: what the account stores and runs, against its quotas.

import { api } from "./api.js";
import { el } from "./dom.js";
import { formatBinaryBytes } from "./format.js";
import { currentSession } from "./session.js";

let usageSeq = 0;

export async function refreshUsage() {
  if (!currentSession()) return;
  const seq = ++usageSeq;
  let account;
  try {
    const response = await api("GET", "/me");
    account = await response.json();
  } catch {
    // The line is a convenience: keep the last figures rather than raise an alarm over it.
    return;
  }
  if (seq !== usageSeq || !currentSession()) return; // a newer refresh or a logout overtook this one
  renderUsage(account);
}

export function resetUsage() {
  usageSeq += 1; // answers still on their way belong to the old session
  el.usage.hidden = true;
  el.usage.replaceChildren();
  el.adminLink.hidden = true;
}

function usageItem(text, { used, limit, title } = {}) {
  const item = document.createElement("span");
  item.className = "usage-item";
  item.textContent = text;
  if (title) item.title = title;
  if (limit != null && used >= limit) item.dataset.state = "full";
  else if (limit != null && used >= 0.9 * limit) item.dataset.state = "near";
  return item;
}

function renderUsage(account) {
  el.adminLink.hidden = !account.admin;
  const usage = account.usage || {};
  const quotas = account.quotas || {};
  const stored = usage.stored_bytes || 0;
  const active = usage.active_jobs || 0;
  const uploads = usage.uploads_last_minute || 0;
  const unlimited = [quotas.stored_bytes, quotas.active_jobs, quotas.uploads_per_minute].every(
    (quota) => quota == null,
  );
  const noLimit = unlimited ? "" : " (no limit)";
  const items = [
    usageItem(
      quotas.stored_bytes == null
        ? `Storage ${formatBinaryBytes(stored)}${noLimit}`
        : `Storage ${formatBinaryBytes(stored)} of ${formatBinaryBytes(quotas.stored_bytes)}`,
      { used: stored, limit: quotas.stored_bytes, title: `${stored.toLocaleString()} bytes` },
    ),
    usageItem(
      quotas.active_jobs == null
        ? `${active} ${active === 1 ? "job" : "jobs"} running${noLimit}`
        : `${active} of ${quotas.active_jobs} jobs running`,
      { used: active, limit: quotas.active_jobs },
    ),
  ];
  // Uploads per minute only matter when they are what stops the next upload.
  if (quotas.uploads_per_minute != null && uploads >= quotas.uploads_per_minute) {
    items.push(
      usageItem(`${uploads} of ${quotas.uploads_per_minute} uploads this minute`, {
        used: uploads,
        limit: quotas.uploads_per_minute,
      }),
    );
  }
  if (unlimited) items.push(usageItem("no limits"));
  const label = document.createElement("span");
  label.className = "visually-hidden";
  label.textContent = "Your usage: ";
  const parts = [label];
  items.forEach((item, index) => {
    if (index) parts.push(" · ");
    parts.push(item);
  });
  el.usage.replaceChildren(...parts);
  el.usage.hidden = false;
}

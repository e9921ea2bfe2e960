// The account's API keys: the list (never a secret: the server keeps only a hash), a form
// that creates one and shows its secret this once, and Revoke, confirmed by a second click.

import { api } from "./api.js";
import { el } from "./dom.js";
import { formatMoment } from "./format.js";
import { clearMessages, showError, showNotice } from "./messages.js";
import { currentSession } from "./session.js";

let listSeq = 0;

export function setUpApiKeys() {
  el.keyForm.addEventListener("submit", createKey);
  el.keyCopy.addEventListener("click", copySecret);
  el.keySecretDone.addEventListener("click", hideSecret);
}

export async function refreshKeys() {
  if (!currentSession()) return;
  const seq = ++listSeq;
  let keys;
  try {
    const response = await api("GET", "/api-keys");
    keys = (await response.json()).keys || [];
  } catch (problem) {
    if (problem.status !== 401) showError(problem.message);
    return;
  }
  if (seq !== listSeq || !currentSession()) return; // a newer refresh or a logout overtook this one
  renderKeys(keys);
}

export function resetKeys() {
  listSeq += 1; // answers still on their way belong to the old session
  el.keyList.replaceChildren();
  el.keyTable.hidden = true;
  el.keysEmpty.hidden = true;
  el.keyForm.reset();
  hideSecret();
}

function renderKeys(keys) {
  el.keyList.replaceChildren(...keys.map(keyRow));
  el.keyTable.hidden = keys.length === 0;
  el.keysEmpty.hidden = keys.length !== 0;
}

function keyRow(key) {
  const row = document.createElement("tr");
  row.className = "key";
  row.dataset.keyId = key.id;
  const cell = (text, className) => {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    row.append(td);
    return td;
  };
  cell(key.name, "key-name");
  const prefix = document.createElement("code");
  prefix.textContent = `${key.prefix}_…`;
  cell("", "key-prefix").append(prefix);
  cell((key.scopes || []).join(", "), "key-scope-list");
  cell(moment(key.created_at, "-"));
  cell(moment(key.expires_at, "never"));
  cell(moment(key.last_used_at, "never"));
  const revoke = document.createElement("button");
  revoke.type = "button";
  revoke.className = "button ghost small danger";
  disarm(revoke, key.name);
  revoke.addEventListener("click", () => revokeKey(key, revoke));
  cell("").append(revoke);
  return row;
}

function moment(iso, otherwise) {
  if (!iso) return otherwise;
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? otherwise : formatMoment(date);
}

async function createKey(event) {
  event.preventDefault();
  clearMessages();
  const name = el.keyName.value.trim();
  const scopes = [el.keyScopeRead, el.keyScopeWrite].filter((box) => box.checked).map((box) => box.value);
  const days = el.keyExpiry.value.trim();
  if (!name) return refuse(el.keyName, "Give the key a name, so you know later what uses it.");
  if (!scopes.length) return refuse(el.keyScopeRead, "Pick at least one scope.");
  if (days && !/^\d+$/.test(days)) return refuse(el.keyExpiry, "Expiry is a whole number of days (1 to 3650), or empty for never.");
  el.keyCreate.disabled = true;
  try {
    const response = await api("POST", "/api-keys", {
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name, scopes, expires_in_days: days ? Number(days) : null }),
    });
    const created = await response.json();
    el.keyForm.reset();
    showSecret(created);
    refreshKeys();
  } catch (problem) {
    if (problem.status !== 401) showError(problem.message);
  } finally {
    el.keyCreate.disabled = false;
  }
}

function refuse(field, message) {
  showError(message);
  field.focus();
}

function showSecret(created) {
  el.keySecretTitle.textContent = `Your new key “${created.name}”.`;
  el.keySecretValue.value = created.key;
  el.keyCopy.textContent = "Copy";
  el.keySecret.hidden = false;
  el.keySecretValue.focus();
  el.keySecretValue.select();
}

function hideSecret() {
  // Out of the page once read: nothing keeps the secret after this.
  el.keySecretValue.value = "";
  el.keySecret.hidden = true;
}

async function copySecret() {
  try {
    await navigator.clipboard.writeText(el.keySecretValue.value);
    el.keyCopy.textContent = "Copied";
  } catch {
    // No clipboard permission (or no secure context): leave it selected for Ctrl+C.
    el.keySecretValue.select();
    showNotice("Select the key and copy it with Ctrl+C (⌘C).", { warning: true });
  }
}

async function revokeKey(key, button) {
  if (!button.dataset.armed) {
    // A second click within a few seconds confirms: whatever uses the key stops working.
    button.dataset.armed = "yes";
    button.textContent = "Confirm revoke";
    button.classList.add("armed");
    button.setAttribute("aria-label", `Confirm: revoke the key ${key.name}`);
    setTimeout(() => disarm(button, key.name), 4000);
    return;
  }
  disarm(button, key.name);
  button.disabled = true;
  clearMessages();
  try {
    await api("DELETE", `/api-keys/${encodeURIComponent(key.id)}`);
    showNotice(`Revoked the key ${key.name}: it stops working within 30 seconds.`);
    refreshKeys();
  } catch (problem) {
    if (problem.status !== 401) showError(problem.message);
    button.disabled = false;
  }
}

function disarm(button, name) {
  delete button.dataset.armed;
  button.textContent = "Revoke";
  button.classList.remove("armed");
  button.setAttribute("aria-label", `Revoke the key ${name}`);
}

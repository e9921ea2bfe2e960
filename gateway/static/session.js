// Who is logged in: the token kept in this tab's sessionStorage, the header that
// names the user, and the switch between the login form and the app. The job list,
// the usage line and the upload start and stop with the session: app.js registers
// them here, so this module needs none of them.

import { el } from "./dom.js";
import { formatClock } from "./format.js";
import { clearMessages, showNotice } from "./messages.js";

const SESSION_KEY = "video2mp3.session";

let session = null; // {token, email, expiresAt (ms since the epoch)}
let expiryTimer = null;
let clockTimer = null;
const startHooks = [];
const endHooks = [];

export function currentSession() {
  return session;
}

export function onSessionStart(hook) {
  startHooks.push(hook);
}

export function onSessionEnd(hook) {
  endHooks.push(hook);
}

export function loadSession() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY));
    if (saved && saved.token && saved.expiresAt > Date.now()) return saved;
  } catch {
    // Unreadable: treat as logged out.
  }
  sessionStorage.removeItem(SESSION_KEY);
  return null;
}

export function saveSession(started) {
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(started));
}

export function startSession(started) {
  session = started;
  el.loginView.hidden = true;
  el.appView.hidden = false;
  el.session.hidden = false;
  el.sessionEmail.textContent = session.email;
  clockTimer = setInterval(showExpiry, 30000);
  keepUntilExpiry();
  for (const hook of startHooks) hook();
}

// Go on with a new token for the same user (a password change ends the old one).
export function renewSession(token, expiresIn) {
  session = { ...session, token, expiresAt: Date.now() + expiresIn * 1000 };
  saveSession(session);
  keepUntilExpiry();
}

function keepUntilExpiry() {
  showExpiry();
  clearTimeout(expiryTimer);
  expiryTimer = setTimeout(
    () => endSession("Your session has expired. Log in again."),
    Math.max(0, session.expiresAt - Date.now()),
  );
}

function showExpiry() {
  const left = Math.max(0, session.expiresAt - Date.now());
  const at = formatClock(new Date(session.expiresAt));
  const minutes = Math.round(left / 60000);
  const within = minutes >= 1 ? `in ${minutes} min` : "in less than a minute";
  el.sessionExpiry.textContent = `· session ends at ${at} (${within})`;
  el.sessionExpiry.title = new Date(session.expiresAt).toString();
}

export function endSession(reason) {
  for (const hook of endHooks) hook();
  clearTimeout(expiryTimer);
  clearInterval(clockTimer);
  session = null;
  sessionStorage.removeItem(SESSION_KEY);
  el.appView.hidden = true;
  el.session.hidden = true;
  el.loginView.hidden = false;
  clearMessages();
  if (reason) showNotice(reason, { sticky: true });
  el.loginEmail.focus();
}

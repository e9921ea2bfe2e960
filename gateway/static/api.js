// The JSON API as the page calls it: requests carry the session's Bearer token, a 401
// ends the session, and an error answer becomes an ApiProblem whose message is the
// server's own words (plus when to try again, on a 429 or 503).

import { formatDelay } from "./format.js";
import { currentSession, endSession } from "./session.js";

const OFFLINE = "Cannot reach the server. Check your connection and try again.";

export class ApiProblem extends Error {
  constructor(message, { status = 0, code = null, field = null } = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

export function problemFrom(status, statusText, text, retryAfter) {
  let body = {};
  try {
    body = JSON.parse(text) || {};
  } catch {
    // A proxy's HTML error page, say: fall back to the status line.
  }
  let message = body.message || `The server answered ${status} ${statusText || ""}`.trim() + ".";
  const wait = status === 429 || status === 503 ? retryDelay(retryAfter) : null;
  // Unless the server's own words already say when.
  if (wait != null && !/try again (in|at)\b/i.test(message)) {
    if (!/[.!?]$/.test(message)) message += ".";
    message += ` Try again ${formatDelay(wait)}.`;
  }
  return new ApiProblem(message, { status, code: body.error || null, field: body.field || null });
}

// Retry-After is a number of seconds or an HTTP date; return seconds, or null if absent.
function retryDelay(retryAfter) {
  if (!retryAfter) return null;
  const text = retryAfter.trim();
  if (/^\d+$/.test(text)) return Number(text);
  const at = Date.parse(text);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

export function bearerAuthorization() {
  return `Bearer ${currentSession().token}`;
}

// End the session the server refused (a 401 with ``code``), saying why when it knows.
export function endRejectedSession(code) {
  endSession(
    code === "token_revoked"
      ? "Your session has ended: you logged out elsewhere, your password changed, or an administrator ended it. Log in again."
      : "Your session has ended. Log in again.",
  );
}

// Tell the server this session's token is done with. Best effort: the page forgets the
// token whatever the answer, and keepalive lets the request finish as the page moves on.
export function revokeSessionToken() {
  const session = currentSession();
  if (!session) return;
  fetch("/logout", {
    method: "POST",
    cache: "no-store",
    credentials: "omit",
    keepalive: true,
    headers: { Accept: "application/json", Authorization: `Bearer ${session.token}` },
  }).catch(() => {});
}

export async function api(method, path, { headers = {}, body } = {}) {
  const token = currentSession().token;
  let response;
  try {
    response = await fetch(path, {
      method,
      body,
      cache: "no-store",
      // No cookies or remembered HTTP credentials: the token is the only credential.
      credentials: "omit",
      headers: { Accept: "application/json", Authorization: `Bearer ${token}`, ...headers },
    });
  } catch {
    throw new ApiProblem(OFFLINE);
  }
  if (response.status === 401) {
    const problem = problemFrom(401, response.statusText, await response.text(), null);
    // A wrong current password (changing it) is the form's error, not the session's end.
    if (problem.code === "invalid_credentials") throw problem;
    // A token replaced while this request was out (a password change) is no longer the session's.
    if (currentSession()?.token === token) endRejectedSession(problem.code);
    throw new ApiProblem("Not logged in.", { status: 401, code: "session_ended" });
  }
  if (!response.ok) {
    const text = await response.text();
    throw problemFrom(response.status, response.statusText, text, response.headers.get("Retry-After"));
  }
  return response;
}

// Return the body of POST /login: {token, expires_in}.
export async function requestToken(email, password) {
  let response;
  try {
    response = await fetch("/login", {
      method: "POST",
      cache: "no-store",
      // "omit" keeps Chromium from offering its own Basic-auth dialog on a 401.
      credentials: "omit",
      headers: { Accept: "application/json", Authorization: basicAuthorization(email, password) },
    });
  } catch {
    throw new ApiProblem(OFFLINE);
  }
  const text = await response.text();
  if (!response.ok) {
    throw problemFrom(response.status, response.statusText, text, response.headers.get("Retry-After"));
  }
  return JSON.parse(text);
}

function basicAuthorization(email, password) {
  // btoa() takes Latin-1 only; send the credentials as UTF-8 bytes.
  let binary = "";
  for (const byte of new TextEncoder().encode(`${email}:${password}`)) {
    binary += String.fromCharCode(byte);
  }
  return `Basic ${btoa(binary)}`;
}

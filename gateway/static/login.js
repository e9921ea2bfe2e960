// The login form: trade an email and password for a token, then start the session.

import { requestToken } from "./api.js";
import { el } from "./dom.js";
import { clearMessages, showError } from "./messages.js";
import { saveSession, startSession } from "./session.js";

export async function logIn(event) {
  event.preventDefault();
  clearMessages();
  const email = el.loginEmail.value.trim();
  const password = el.loginPassword.value;
  if (!email || !password) {
    showError("Enter your email and password.");
    return;
  }
  el.loginButton.disabled = true;
  el.loginButton.textContent = "Logging in…";
  try {
    const body = await requestToken(email, password);
    const started = { token: body.token, email, expiresAt: Date.now() + body.expires_in * 1000 };
    saveSession(started);
    el.loginPassword.value = "";
    startSession(started);
  } catch (problem) {
    showError(problem.message);
    el.loginPassword.select();
    el.loginPassword.focus();
  } finally {
    el.loginButton.disabled = false;
    el.loginButton.textContent = "Log in";
  }
}

// Single sign-on: the button shows when the gateway says it is on; the provider's
// round trip ends back here with the outcome in the address's fragment, which no
// server ever sees: #login=<token> or #login_error=<code>.

const SSO_ERRORS = {
  access_denied: "The login was cancelled at your identity provider.",
  account_disabled: "This account is disabled. Ask your operator.",
  domain_not_allowed: "Accounts with your email address's domain may not log in here.",
  email_not_verified: "Your identity provider has not verified your email address.",
  invalid_state: "That login had expired or was already used. Please try again.",
  sso_disabled: "Single sign-on is not set up here.",
  unavailable: "Single sign-on is unavailable right now. Please try again in a moment.",
};

export async function setUpSingleSignOn() {
  try {
    const response = await fetch("/login/oidc/config", { cache: "no-store", credentials: "omit" });
    if (!response.ok) return;
    const config = await response.json();
    if (!config.enabled) return;
    el.ssoButton.textContent = `Log in with ${config.name}`;
    el.sso.hidden = false;
  } catch {
    // Without the settings the page offers password logins only.
  }
}

// Return the session a single sign-on just handed over (saved), or null; show its error.
export function takeLoginFromAddress() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get("login");
  const error = fragment.get("login_error");
  if (token === null && error === null) return null;
  // The token must not stay in the address bar, the history or a bookmark.
  history.replaceState(null, "", location.pathname + location.search);
  if (error !== null) {
    showError(SSO_ERRORS[error] || "Single sign-on failed. Please try again.");
    return null;
  }
  const claims = tokenClaims(token);
  if (!claims || typeof claims.sub !== "string" || !(claims.exp * 1000 > Date.now())) {
    showError("Single sign-on failed. Please try again.");
    return null;
  }
  const started = { token, email: claims.sub, expiresAt: claims.exp * 1000 };
  saveSession(started);
  return started;
}

// The token's claims, read only to name the user and know when it ends: the gateway
// checks its signature on every request.
function tokenClaims(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(payload), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return null;
  }
}

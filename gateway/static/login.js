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

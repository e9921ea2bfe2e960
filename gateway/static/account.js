// The account panel, opened from the header: API keys (api-keys.js), a new password,
// the export of everything the account holds, and deleting the account for good.

import { api } from "./api.js";
import { refreshKeys, resetKeys, setUpApiKeys } from "./api-keys.js";
import { el } from "./dom.js";
import { downloadExport } from "./download.js";
import { clearMessages, showError, showNotice } from "./messages.js";
import { currentSession, endSession, renewSession } from "./session.js";

export function setUpAccount() {
  setUpApiKeys();
  el.accountToggle.addEventListener("click", () => showAccount(el.account.hidden));
  el.accountClose.addEventListener("click", () => showAccount(false));
  el.passwordForm.addEventListener("submit", changePassword);
  el.exportButton.addEventListener("click", () => downloadExport(el.exportButton));
  el.deleteConfirm.addEventListener("input", () => {
    el.deleteButton.disabled = !confirmsAccount(el.deleteConfirm.value);
  });
  el.deleteForm.addEventListener("submit", deleteAccount);
}

export function resetAccount() {
  showAccount(false);
  resetKeys();
  el.passwordForm.reset();
  el.deleteForm.reset();
  el.deleteButton.disabled = true;
}

function showAccount(open) {
  el.account.hidden = !open;
  el.accountToggle.setAttribute("aria-expanded", String(open));
  if (!open) return;
  const { email } = currentSession();
  el.accountEmail.textContent = email;
  el.passwordUsername.value = email; // for password managers: whose password changes
  el.accountTitle.focus();
  el.account.scrollIntoView({ block: "start" });
  refreshKeys();
}

function confirmsAccount(typed) {
  return typed.trim().toLowerCase() === currentSession().email.toLowerCase();
}

async function changePassword(event) {
  event.preventDefault();
  clearMessages();
  const current = el.passwordCurrent.value;
  const chosen = el.passwordNew.value;
  if (chosen !== el.passwordRepeat.value) {
    showError("The new password and its repetition differ: type the same one twice.");
    el.passwordRepeat.select();
    return;
  }
  el.passwordButton.disabled = true;
  try {
    const response = await api("POST", "/me/password", {
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ current_password: current, new_password: chosen }),
    });
    const renewed = await response.json();
    renewSession(renewed.token, renewed.expires_in);
    el.passwordForm.reset();
    showNotice(
      "Your password is changed. Other sessions end within 30 seconds (API keys keep working).",
      { sticky: true },
    );
  } catch (problem) {
    if (problem.status === 401 && problem.code !== "invalid_credentials") return; // session over
    showError(
      problem.code === "invalid_credentials" ? "The current password is wrong." : problem.message,
    );
    (problem.code === "invalid_credentials" ? el.passwordCurrent : el.passwordNew).select();
  } finally {
    el.passwordButton.disabled = false;
  }
}

async function deleteAccount(event) {
  event.preventDefault();
  clearMessages();
  const typed = el.deleteConfirm.value.trim();
  if (!confirmsAccount(typed)) return;
  el.deleteButton.disabled = true;
  el.deleteButton.textContent = "Deleting…";
  try {
    const response = await api("DELETE", "/me", {
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ confirm: currentSession().email }),
    });
    const answer = await response.json();
    const left = answer.remaining_jobs || 0;
    endSession(
      left
        ? `Your account is deleted. Its last ${left === 1 ? "conversion goes" : `${left} conversions go`} within minutes.`
        : "Your account is deleted, with all its conversions.",
    );
  } catch (problem) {
    if (problem.status !== 401) showError(problem.message);
    el.deleteButton.disabled = !currentSession() || !confirmsAccount(el.deleteConfirm.value);
  } finally {
    el.deleteButton.textContent = "Delete my account";
  }
}

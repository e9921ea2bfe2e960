// The two message lines above the cards: an error to dismiss, and a notice that fades.

import { el } from "./dom.js";

let noticeTimer = null;

export function showError(text) {
  el.message.replaceChildren();
  if (!text) return;
  const span = document.createElement("span");
  span.textContent = text;
  const close = document.createElement("button");
  close.type = "button";
  close.className = "message-close";
  close.setAttribute("aria-label", "Dismiss");
  close.textContent = "×";
  close.addEventListener("click", () => el.message.replaceChildren());
  el.message.append(span, close);
}

export function showNotice(text, { sticky = false, warning = false } = {}) {
  clearTimeout(noticeTimer);
  el.notice.textContent = text || "";
  el.notice.classList.toggle("warning", warning);
  if (text && !sticky) noticeTimer = setTimeout(() => (el.notice.textContent = ""), 8000);
}

export function clearMessages() {
  showError("");
  showNotice("");
}

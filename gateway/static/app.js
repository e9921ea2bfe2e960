// The video2mp3 web page: log in, upload with options, watch jobs, download the results.
// This is the entry module: it wires the others together and starts the page. It uses
// the same JSON API as every other client; the token lives in this tab's sessionStorage
// and goes out as a Bearer header. ES modules, no build step: the server pins every
// import to the imported file's content (gateway/web.py).

import { resetAccount, setUpAccount } from "./account.js";
import { revokeSessionToken } from "./api.js";
import { el } from "./dom.js";
import { refreshJobs, resetJobs, setUpJobList } from "./jobs.js";
import { logIn, setUpSingleSignOn, takeLoginFromAddress } from "./login.js";
import { setUpFormatChoice } from "./output-format.js";
import { setUpOutputOptions } from "./output-options.js";
import { clearMessages } from "./messages.js";
import { endSession, loadSession, onSessionEnd, onSessionStart, startSession } from "./session.js";
import { chooseFile, setUpUploadForm, stopUpload } from "./upload.js";
import { setUpUrlImport } from "./url-import.js";
import { refreshUsage, resetUsage } from "./usage.js";

onSessionStart(() => {
  refreshJobs();
  refreshUsage();
});
onSessionEnd(() => {
  stopUpload();
  resetJobs();
  resetUsage();
  resetAccount();
  chooseFile(null);
});

el.loginForm.addEventListener("submit", logIn);
el.logout.addEventListener("click", () => {
  revokeSessionToken();
  endSession("You are logged out.");
});
el.refresh.addEventListener("click", () => {
  clearMessages();
  refreshJobs();
  refreshUsage();
});
setUpUploadForm();
setUpUrlImport();
setUpFormatChoice();
setUpOutputOptions();
setUpJobList();
setUpAccount();

const saved = takeLoginFromAddress() || loadSession();
if (saved) {
  startSession(saved);
} else {
  el.loginView.hidden = false;
  el.loginEmail.focus();
}
setUpSingleSignOn();

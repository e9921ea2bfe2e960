// Resumable uploads with the tus protocol (gateway/tus.py, at /files/), through
// tus-js-client: vendored from npm, loaded by index.html as a classic script that defines
// the global `tus`, read here when an upload starts.
//
// The body goes in chunks of CHUNK_SIZE, a failed request is retried on RETRY_DELAYS, and
// the upload's URL is kept in localStorage under a fingerprint, so that the same file sent
// the same way, chosen again after a reload or a browser restart, resumes where the
// server's offset stands (HEAD, then PATCH from there): no byte the server has is sent again.

export const ENDPOINT = "/files/";
// One chunk is one PATCH request: below the 100 MB request bodies that proxies in front of
// self-hosted services commonly accept (nginx as usually configured, Cloudflare's plans).
export const CHUNK_SIZE = 50_000_000;
// Milliseconds to wait before each retry. tus-js-client starts again from the first delay
// whenever the server's offset moved since the last retry, so this bounds one outage (about
// six minutes without progress), not the upload. At once first: a severed keep-alive
// connection, or a cut request whose bytes the gateway has kept. Then 1 to 5 s, for the
// gateway to notice the cut request and release the upload (423, Retry-After: 1) and for a
// Wi-Fi blip. Then up to a minute apart, for a phone changing networks or a gateway
// restarting, so a line that comes back resumes within a minute.
export const RETRY_DELAYS = [
  0, 1000, 3000, 5000, 10000, 20000, 30000, 60000, 60000, 60000, 60000, 60000,
];
const FINGERPRINT_VERSION = "video2mp3-upload-1";

// No answer at all (the line dropped) or one that says "try again": the read watchdog cut
// a stalled body (408, what arrived is kept), the client's offset is stale (409), the cut
// request still holds the upload (423), or a proxy or the gateway is restarting (5xx).
function isRetryable(status) {
  return status === 0 || status === 408 || status === 409 || status === 423 || status >= 500;
}

// tus-js-client's localStorage entries, keeping only what resuming needs: the upload's URL,
// its size and when it began. Not its metadata (file name, title), which would outlive the
// session and show one user's files to the next person at this browser.
const keptUploads = {
  storage: () => globalThis.tus.defaultOptions.urlStorage,
  findUploadsByFingerprint(fingerprint) {
    return this.storage().findUploadsByFingerprint(fingerprint);
  },
  removeUpload(urlStorageKey) {
    return this.storage().removeUpload(urlStorageKey);
  },
  addUpload(fingerprint, { uploadUrl, size, creationTime }) {
    return this.storage().addUpload(fingerprint, { uploadUrl, size, creationTime });
  },
};

// The key under which an upload is kept for resuming: who sends which file (as the browser
// describes it: name, size, last change, type), with which options, whether only its audio
// track goes, and to which server. Hashed, so the storage names neither user nor file.
export async function fingerprintOf({ user, file, fields, audioOnly }) {
  const identity = JSON.stringify([
    FINGERPRINT_VERSION,
    new URL(ENDPOINT, location.href).href,
    user,
    [file.name, file.size, file.lastModified, file.type],
    [...fields].sort(),
    audioOnly,
  ]);
  if (!globalThis.crypto?.subtle) return `video2mp3-${plainHash(identity)}`;
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(identity));
  const hex = Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0"));
  return `video2mp3-${hex.join("")}`;
}

// A page served over plain HTTP to another machine (a LAN address) is no secure context and
// has no crypto.subtle. The key only has to be stable and not spell out user or file, so two
// seeds of cyrb53 (public domain, bryc) make a 106-bit one there, and resuming still works.
function plainHash(text) {
  const cyrb53 = (seed) => {
    let h1 = 0xdeadbeef ^ seed;
    let h2 = 0x41c6ce57 ^ seed;
    for (let i = 0; i < text.length; i += 1) {
      const code = text.charCodeAt(i);
      h1 = Math.imul(h1 ^ code, 2654435761);
      h2 = Math.imul(h2 ^ code, 1597334677);
    }
    h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
    h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
    return (4294967296 * (2097151 & h2) + (h1 >>> 0)).toString(16).padStart(14, "0");
  };
  return `${cyrb53(1)}${cyrb53(2)}`;
}

// Drop every kept URL for `fingerprint`: the upload finished, was cancelled or was refused.
async function forgetUploads(fingerprint) {
  for (const kept of await keptUploads.findUploadsByFingerprint(fingerprint)) {
    await keptUploads.removeUpload(kept.urlStorageKey);
  }
}

// The server's answer behind a tus-js-client error, as problemFrom() reads one; status 0
// when there was none.
function answerOf(error) {
  const response = error.originalResponse;
  if (!response) return { status: 0, statusText: "", body: "", retryAfter: null };
  return {
    status: response.getStatus(),
    statusText: response.getUnderlyingObject().statusText,
    body: response.getBody(),
    retryAfter: response.getHeader("Retry-After"),
  };
}

// Send `body` with `metadata` as a tus upload, resuming the one kept under `fingerprint` if
// there is one. Callbacks: progress(sent, total), retrying(delayMs), done(),
// failed(answer) with {status, statusText, body, retryAfter} (status 0: no answer, after
// the retries). Return a handle: cancel() stops the upload and removes it from the server
// and from this browser's storage, stop() only stops it (a later start resumes it), and
// `resumed` says whether it resumes an earlier one.
export async function startResumableUpload({ body, metadata, fingerprint, authorization, on }) {
  const previous = await keptUploads.findUploadsByFingerprint(fingerprint);
  const newest = previous.sort(
    (a, b) => Date.parse(b.creationTime) - Date.parse(a.creationTime),
  )[0];
  let stopped = false;
  const upload = new globalThis.tus.Upload(body, {
    endpoint: new URL(ENDPOINT, location.href).href,
    chunkSize: CHUNK_SIZE,
    retryDelays: RETRY_DELAYS,
    metadata,
    headers: { Authorization: authorization },
    fingerprint: () => Promise.resolve(fingerprint),
    storeFingerprintForResuming: true,
    urlStorage: keptUploads,
    onShouldRetry(error, attempt) {
      const retry = isRetryable(answerOf(error).status);
      // Termination after a cancel retries through here too; the page has moved on.
      if (retry && !stopped) on.retrying(RETRY_DELAYS[attempt]);
      return retry;
    },
    onProgress: (sent, total) => on.progress(sent, total),
    onSuccess() {
      stopped = true;
      forgetUploads(fingerprint);
      on.done();
    },
    onError(error) {
      stopped = true;
      const answer = answerOf(error);
      // Refused (a bad option, a quota, not a video, gone): nothing on the server to resume.
      // A line still down, a server still failing or an ended session keep it, for the next
      // try with the same file.
      const { status } = answer;
      if (status >= 400 && status < 500 && status !== 401 && !isRetryable(status)) {
        forgetUploads(fingerprint);
      }
      on.failed(answer);
    },
  });
  if (newest) upload.resumeFromPreviousUpload(newest);
  upload.start();
  return {
    resumed: Boolean(newest),
    async cancel() {
      stopped = true;
      try {
        await upload.abort(true); // DELETE /files/<id>, if it was created
      } catch {
        // Unreachable or refused: the server removes an unfinished upload when it expires.
      }
      await forgetUploads(fingerprint);
    },
    stop() {
      stopped = true;
      upload.abort(false);
    },
  };
}

// A done job's player: its waveform, fetched once when its row first comes into view, and
// a Play button that plays the output in an <audio> with the waveform as its progress bar
// (a click or a drag on it seeks, as do the arrow keys; the part played is coloured).
//
// An <audio> cannot send the token, so the output is fetched with it on the first Play and
// played from an object URL. One output is held at a time: playing another row's lets go
// of the one before (paused, its URL revoked), as does its row leaving the list or the
// session ending. The browser keeps a large blob on disk rather than in memory.

import { api } from "./api.js";
import { formatSeconds } from "./format.js";
import { showError } from "./messages.js";
import { formatOf } from "./output-format.js";
import { drawWaveform, peaksOf } from "./waveform.js";

const SEEK_STEP_SECONDS = 5;
const SEEK_PAGE_SECONDS = 30;

let loaded = null; // the player whose output is held
const waiting = new Map(); // waveform element -> player, until it comes into view
const visibility = new IntersectionObserver(revealed, { rootMargin: "200px" });
const resizing = new ResizeObserver((entries) => {
  for (const entry of entries) draw(entry.target.player);
});

function part(tag, className, parent) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  parent.append(node);
  return node;
}

// Build a player (hidden until updatePlayer gives it a done job) at the end of ``parent``.
export function createPlayer(parent) {
  const root = part("div", "job-player", parent);
  root.hidden = true;
  const play = part("button", "button secondary small play", root);
  play.type = "button";
  const wave = part("canvas", "waveform", root);
  wave.tabIndex = 0;
  wave.setAttribute("role", "slider");
  wave.setAttribute("aria-valuemin", "0");
  const time = part("span", "player-time muted", root);
  const player = {
    root, play, wave, time,
    job: null,
    peaks: [], // empty until fetched: a flat line
    waveform: null, // null, then "waiting", "loading", "drawn" or "none"
    duration: null, // seconds: the waveform's, then the audio's own
    position: 0, // seconds: where the audio is, or starts when first played
    audio: null,
    url: null,
    fetching: false,
    frame: 0, // the animation frame that redraws the waveform while it plays
  };
  wave.player = player;
  play.addEventListener("click", () => togglePlay(player));
  setUpSeeking(player);
  showState(player);
  return player;
}

// Show ``job`` in its player: a done job's waveform is fetched once, when first in view.
export function updatePlayer(player, job) {
  const done = job.status === "done" && Boolean(job.download_url);
  if (!done) {
    releasePlayer(player);
    player.root.hidden = true;
    return;
  }
  player.job = job;
  player.root.hidden = false;
  const name = job.filename || "this conversion";
  player.wave.setAttribute("aria-label", `Waveform of the ${formatOf(job).label} of ${name}: seek`);
  if (player.waveform === null) {
    if (job.waveform_url) {
      player.waveform = "waiting";
      waiting.set(player.wave, player);
      visibility.observe(player.wave);
    } else {
      player.waveform = "none";
    }
    resizing.observe(player.wave);
  }
  showState(player);
}

// Let go of a player's audio and stop watching it: its row is gone, or its session.
export function releasePlayer(player) {
  unloadAudio(player);
  visibility.unobserve(player.wave);
  resizing.unobserve(player.wave);
  waiting.delete(player.wave);
}

function revealed(entries) {
  for (const entry of entries) {
    const player = waiting.get(entry.target);
    if (!entry.isIntersecting || !player) continue;
    waiting.delete(entry.target);
    visibility.unobserve(entry.target);
    loadWaveform(player);
  }
}

async function loadWaveform(player) {
  const { job } = player;
  player.waveform = "loading";
  try {
    const response = await api("GET", job.waveform_url);
    const answer = await response.json();
    player.peaks = peaksOf(answer);
    if (player.duration === null && answer.duration > 0) player.duration = answer.duration;
    player.waveform = "drawn";
  } catch (problem) {
    // The player still plays and seeks on a flat line; a missing waveform is no error.
    player.waveform = "none";
    if (problem.code !== "no_waveform") console.debug(`video2mp3: no waveform: ${problem.message}`);
  }
  showState(player);
}

async function togglePlay(player) {
  if (player.audio) {
    if (player.audio.paused) await start(player);
    else player.audio.pause();
    return;
  }
  if (player.fetching) return;
  const { job } = player;
  player.fetching = true;
  showState(player);
  try {
    const response = await api("GET", job.download_url, { headers: { Accept: "audio/*" } });
    const blob = await response.blob();
    if (player.job !== job || !player.fetching) return; // let go of while it came
    if (loaded && loaded !== player) unloadAudio(loaded);
    loadAudio(player, blob);
    await start(player);
  } catch (problem) {
    if (problem.status !== 401) showError(problem.message);
  } finally {
    player.fetching = false;
    showState(player);
  }
}

function loadAudio(player, blob) {
  const audio = document.createElement("audio");
  audio.preload = "auto";
  player.url = URL.createObjectURL(blob);
  audio.src = player.url;
  audio.currentTime = player.position;
  for (const type of ["play", "pause", "ended", "durationchange", "seeked"]) {
    audio.addEventListener(type, () => follow(player));
  }
  audio.addEventListener("timeupdate", () => follow(player));
  audio.addEventListener("error", () => {
    const name = player.job.filename || "this conversion";
    showError(`This browser cannot play the ${formatOf(player.job).label} of ${name}: download it instead.`);
    unloadAudio(player);
  });
  player.root.append(audio);
  player.audio = audio;
  loaded = player;
}

async function start(player) {
  try {
    await player.audio.play();
  } catch (error) {
    // Refused (no click yet, as the browser sees it) or let go of: Play is there to try again.
    console.debug(`video2mp3: not playing: ${error.message}`);
  }
  follow(player);
}

function unloadAudio(player) {
  player.fetching = false;
  const { audio } = player;
  if (!audio) return;
  player.audio = null;
  audio.pause();
  audio.removeAttribute("src");
  audio.load(); // drops the media the element holds
  audio.remove();
  URL.revokeObjectURL(player.url);
  player.url = null;
  if (loaded === player) loaded = null;
  showState(player);
}

// Take the audio's time and length on its events (a few a second), and redraw the
// waveform every frame while it plays.
function follow(player) {
  const { audio } = player;
  if (!audio) return;
  player.position = audio.currentTime;
  if (Number.isFinite(audio.duration) && audio.duration > 0) player.duration = audio.duration;
  showState(player);
  if (!audio.paused && !player.frame) player.frame = requestAnimationFrame(() => animate(player));
}

function animate(player) {
  player.frame = 0;
  const { audio } = player;
  if (!audio || audio.paused) return;
  player.position = audio.currentTime;
  draw(player);
  player.frame = requestAnimationFrame(() => animate(player));
}

function seek(player, seconds) {
  if (!player.duration) return;
  player.position = Math.min(player.duration, Math.max(0, seconds));
  if (player.audio) player.audio.currentTime = player.position;
  showState(player);
}

function setUpSeeking(player) {
  const { wave } = player;
  const seekTo = (event) => {
    const box = wave.getBoundingClientRect();
    if (box.width) seek(player, ((event.clientX - box.left) / box.width) * player.duration);
  };
  wave.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    wave.setPointerCapture(event.pointerId);
    seekTo(event);
  });
  wave.addEventListener("pointermove", (event) => {
    if (wave.hasPointerCapture(event.pointerId)) seekTo(event);
  });
  wave.addEventListener("keydown", (event) => {
    const moves = {
      ArrowLeft: -SEEK_STEP_SECONDS,
      ArrowDown: -SEEK_STEP_SECONDS,
      ArrowRight: SEEK_STEP_SECONDS,
      ArrowUp: SEEK_STEP_SECONDS,
      PageDown: -SEEK_PAGE_SECONDS,
      PageUp: SEEK_PAGE_SECONDS,
    };
    if (event.key in moves) seek(player, player.position + moves[event.key]);
    else if (event.key === "Home") seek(player, 0);
    else if (event.key === "End") seek(player, player.duration || 0);
    else if (event.key === " " || event.key === "Enter") togglePlay(player);
    else return;
    event.preventDefault();
  });
}

function showState(player) {
  const { audio, duration, job, play, position, wave } = player;
  const playing = Boolean(audio) && !audio.paused;
  const name = (job && job.filename) || "this conversion";
  play.disabled = player.fetching;
  play.textContent = player.fetching ? "Loading…" : playing ? "Pause" : "Play";
  play.setAttribute("aria-label", `${playing ? "Pause" : "Play"} ${name}`);
  const shown = duration ? `${clock(position)} / ${clock(duration)}` : "";
  player.time.textContent = shown;
  wave.setAttribute("aria-valuemax", String(duration || 0));
  wave.setAttribute("aria-valuenow", String(Math.round(position * 10) / 10));
  wave.setAttribute("aria-valuetext", shown || "not loaded");
  wave.dataset.state = player.waveform || "none";
  draw(player);
}

function draw(player) {
  if (player.root.hidden) return;
  drawWaveform(player.wave, player.peaks, player.duration ? player.position / player.duration : 0);
}

function clock(seconds) {
  return formatSeconds(Math.floor(seconds));
}

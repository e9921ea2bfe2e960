// The sound of a phone video (MP4, MOV, M4V), copied out in the browser so that only it is
// uploaded: a phone recording is about 98% picture, which the converter throws away.
//
// The first sound track (the one the converter would take, as ffmpeg's "0:a:0") is copied
// sample for sample into an M4A, never re-encoded: its sample description (the codec's
// parameters) byte for byte, its packets as they are, its timing in its own timescale with
// the edit list that skips the encoder's priming. Only the file's index (moov) is read here,
// in one slice; mp4box.js parses it. The sound's packets are read in slices of up to
// READ_BYTES, packets close together in one read, so a multi-GB video never sits in memory:
// only its sound does.
//
// A trim is copied with TRIM_MARGIN_SECONDS on both sides, as the command-line client does,
// and the server still trims, sample-exact, at the shifted times this returns. The copy's
// time 0 is a whole millisecond of the video's (the server reads times to the millisecond)
// that is a whole number of the track's units; a few packets before it are copied too and
// hidden by the edit list, so the copy sounds exactly like the video from its first sample.
// Its only sync sample is its first packet: ffmpeg's seek for the server's trim decodes from
// there, as a play from the start does, so the MP3 is the one the whole video would give.
//
// The same file and range always give the same bytes (nothing comes from the clock), so a
// page reloaded mid-upload makes the same M4A again and the upload resumes.
//
// Nothing here may stop an upload: whatever goes wrong means null, "send the whole file".

import { parseTime } from "./format.js";

const MP4BOX = "./vendor/mp4box/mp4box.all.js";
// Audio kept on each side of a trim: the server cuts inside it.
const TRIM_MARGIN_SECONDS = 1;
// Packets decoded but not heard before a trimmed copy's start: AAC's overlap needs one; an
// MP3 frame's bit reservoir reaches up to 511 bytes back, four frames at 48 kbit/s.
const PREROLL_PACKETS = 6;
// A phone writes three to six top-level boxes; this many means no MP4 at all.
const MAX_TOP_LEVEL_BOXES = 1000;
// An hour of 4K video with its sound indexes in a few MB.
const MAX_INDEX_BYTES = 64 * 2 ** 20;
// The sound is held in memory: 256 kbit/s of AAC is 115 MB an hour, so this is two hours'.
const MAX_AUDIO_BYTES = 256 * 2 ** 20;
// One read of the file, and the gap between two packets that is read rather than skipped: a
// read costs about 1 ms in Chromium, as long as reading 256 KB more does. A recorder that puts
// sound between every two frames has the whole file read, 8 MB at a time (~250 MB/s).
const READ_BYTES = 8 * 2 ** 20;
const MAX_GAP_BYTES = 256 * 2 ** 10;
// A 4 GB video is read in about 40 s at 100 MB/s, and sent whole in 27 minutes at
// 20 Mbit/s; a slower disk than that, or a stuck one, must not hold the upload back.
const TIME_LIMIT_MS = 60_000;
// What an ISO file (MP4, MOV, M4V, 3GP) may start with: QuickTime files may start with
// padding or with the media itself instead of a file type box.
const FIRST_BOXES = new Set(["ftyp", "moov", "mdat", "free", "skip", "wide"]);
// The sound copied, by the name ffmpeg gives the codec: what an 'mp4a' sample description's
// esds says it holds. (Not ALAC: ffmpeg ignores an edit list that starts inside an ALAC
// packet, so a trimmed copy would be heard up to 93 ms early.)
const OBJECT_TYPES = {
  0x40: "aac", // MPEG-4 audio
  0x66: "aac", // MPEG-2 AAC Main, LC and SSR
  0x67: "aac",
  0x68: "aac",
  0x69: "mp3", // MPEG-2 and MPEG-1 audio
  0x6b: "mp3",
};
// The M4A's file type box: what ffmpeg's ipod muxer writes for an .m4a.
const FILE_TYPE = ["M4A ", 0x200, "M4A ", "isom", "iso2"];
const IDENTITY_MATRIX = [0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000];

let mp4box = null;

class NotCopyable extends Error {}

// Copy the first sound track of an MP4/MOV/M4V ``file`` into an M4A, trimmed to the user's
// ``start``/``end`` (as typed, e.g. "90" or "1:30") plus the margin. Resolve to
// { blob, options, codec }: the M4A (audio/mp4), the start/end to send in place of the
// user's with, when there is a trim, the copy's start in the video as clip_start (the job
// then shows the user's times), and ffmpeg's name of the codec ("aac" or "mp3"); or to
// null: send the whole file.
export async function audioTrackOf(file, { start, end } = {}) {
  const deadline = performance.now() + TIME_LIMIT_MS;
  let timer;
  const timeUp = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new NotCopyable("took too long")), TIME_LIMIT_MS);
  });
  const copying = copyAudioTrack(file, start, end, deadline);
  copying.catch(() => {}); // one still running when time is up stops at its next read, unheard
  try {
    return await Promise.race([copying, timeUp]);
  } catch (error) {
    console.debug(`video2mp3: uploading all of ${file && file.name}: ${error.message}`);
    return null;
  } finally {
    clearTimeout(timer);
  }
}

async function copyAudioTrack(file, start, end, deadline) {
  const range = trimRange(start, end);
  const boxes = await topLevelBoxes(file);
  if (boxes.some((box) => box.type === "moof")) throw new NotCopyable("a fragmented MP4");
  const indexes = boxes.filter((box) => box.type === "moov");
  if (indexes.length !== 1) throw new NotCopyable(`${indexes.length} moov boxes`);
  const [moov] = indexes;
  if (moov.size > MAX_INDEX_BYTES) throw new NotCopyable("an index too big to read");
  const source = await file.slice(moov.start, moov.start + moov.size).arrayBuffer();

  const { ISOFile, MP4BoxBuffer, MultiBufferStream } = await loadMp4box();
  const parsed = new ISOFile(new MultiBufferStream(MP4BoxBuffer.fromArrayBuffer(source, 0)));
  const movie = parsed.moov;
  if (!movie || !movie.traks) throw new NotCopyable("an unreadable index");
  if (movie.mvex) throw new NotCopyable("a fragmented MP4");
  const handlers = movie.traks.map((trak) => trak.mdia.hdlr.handler);
  if (!handlers.includes("vide")) throw new NotCopyable("no picture to leave out");
  const trak = movie.traks[handlers.indexOf("soun")];
  if (!trak) throw new NotCopyable("no sound track");
  const stbl = trak.mdia.minf.stbl;
  const description = new Uint8Array(source, stbl.stsd.start, stbl.stsd.size);
  const codec = codecOf(description);

  parsed.buildTrakSampleLists(trak);
  const track = trackOf(trak, movie.mvhd.timescale);
  const copy = copyOf(track, range);
  let audioBytes = 0;
  for (let i = copy.first; i <= copy.last; i += 1) audioBytes += track.samples[i].size;
  if (audioBytes > MAX_AUDIO_BYTES) throw new NotCopyable("more sound than it is wise to hold");
  if (audioBytes >= file.size) throw new NotCopyable("no smaller than the video");
  const chunks = await readPackets(file, track.samples, copy, deadline);

  // The index first, where the server's sniff looks. Its size does not depend on the
  // offsets it holds: write it once to learn where the packets go, then with them.
  const fileType = box("ftyp", u32(...FILE_TYPE));
  const mediaHeader = u32(8 + audioBytes, "mdat");
  const draft = movieBox(track, copy, chunks, description, 0);
  const dataStart = fileType.length + draft.length + mediaHeader.length;
  const index = movieBox(track, copy, chunks, description, dataStart);
  const packets = chunks.map((chunk) => chunk.bytes);
  const blob = new Blob([fileType, index, mediaHeader, ...packets], { type: "audio/mp4" });
  if (blob.size >= file.size) throw new NotCopyable("no smaller than the video");
  return { blob, options: shiftedOptions(range, copy), codec };
}

function loadMp4box() {
  if (!mp4box) {
    mp4box = import(MP4BOX).catch((error) => {
      mp4box = null; // a failed fetch is tried again with the next file
      throw error;
    });
  }
  return mp4box;
}

// ---- the user's range, read as the server reads it ----

function trimRange(start, end) {
  const range = { start: parseTime(start), end: parseTime(end) };
  // The server names what is wrong with these; the whole file goes to hear it.
  if (Number.isNaN(range.start) || Number.isNaN(range.end)) throw new NotCopyable("a bad time");
  if (range.end !== null && range.end <= (range.start || 0)) {
    throw new NotCopyable("an empty trim");
  }
  return range;
}

function shiftedOptions(range, copy) {
  const options = {};
  for (const name of ["start", "end"]) {
    if (range[name] !== null) {
      const shifted = Math.max(0, range[name] - copy.shift);
      options[name] = String(Number(shifted.toFixed(6)));
    }
  }
  if (Object.keys(options).length && copy.shift > 0) {
    options.clip_start = String(Number(copy.shift.toFixed(6)));
  }
  return options;
}

// ---- reading the file ----

// Walk the top-level boxes by their headers alone: the index may be at either end.
async function topLevelBoxes(file) {
  const boxes = [];
  let position = 0;
  while (position < file.size) {
    if (boxes.length === MAX_TOP_LEVEL_BOXES) throw new NotCopyable("too many boxes");
    const end = Math.min(position + 16, file.size);
    const header = new DataView(await file.slice(position, end).arrayBuffer());
    if (header.byteLength < 8) throw new NotCopyable("a truncated file");
    const type = fourccAt(header, 4);
    if (!boxes.length && !FIRST_BOXES.has(type)) throw new NotCopyable("no MP4 or MOV");
    let size = header.getUint32(0);
    let headerSize = 8;
    if (size === 1) {
      if (header.byteLength < 16) throw new NotCopyable("a truncated file");
      size = header.getUint32(8) * 2 ** 32 + header.getUint32(12);
      headerSize = 16;
    } else if (size === 0) {
      size = file.size - position; // the last box, to the end of the file
    }
    if (size < headerSize || position + size > file.size) {
      throw new NotCopyable(`a '${type}' box that does not fit: a truncated or damaged file`);
    }
    boxes.push({ type, start: position, size });
    position += size;
  }
  return boxes;
}

function fourccAt(view, offset) {
  return String.fromCharCode(...[0, 1, 2, 3].map((i) => view.getUint8(offset + i)));
}

// Name the codec of a sound sample description (an 'stsd' box with one entry), or refuse it.
function codecOf(stsd) {
  const view = new DataView(stsd.buffer, stsd.byteOffset, stsd.byteLength);
  if (view.getUint32(12) !== 1) throw new NotCopyable("several sound sample descriptions");
  const entry = { start: 16, size: view.getUint32(16), type: fourccAt(view, 20) };
  if (entry.start + entry.size > stsd.length) throw new NotCopyable("a damaged sound description");
  if (entry.type !== "mp4a") throw new NotCopyable(`sound in '${entry.type}'`);
  // An ISO entry has 28 bytes of fields; QuickTime's versions 1 and 2 (MOV) 16 or 36 more,
  // and may wrap the esds in a 'wave' box.
  const version = view.getUint16(entry.start + 16);
  const fields = 36 + ({ 0: 0, 1: 16, 2: 36 }[version] ?? NaN);
  const esds = findBox(view, entry.start + fields, entry.start + entry.size, "esds", ["wave"]);
  if (!esds) throw new NotCopyable("an mp4a entry without esds");
  const objectType = objectTypeOf(view, esds.start + 12, esds.end);
  const codec = OBJECT_TYPES[objectType];
  if (!codec) throw new NotCopyable(`MPEG-4 sound of object type ${objectType}`);
  return codec;
}

function findBox(view, from, to, type, containers) {
  for (let at = from; at + 8 <= to; ) {
    const size = view.getUint32(at);
    const name = fourccAt(view, at + 4);
    if (size < 8 || at + size > to) return null;
    if (name === type) return { start: at, end: at + size };
    if (containers.includes(name)) {
      const found = findBox(view, at + 8, at + size, type, containers);
      if (found) return found;
    }
    at += size;
  }
  return null;
}

// Read the objectTypeIndication of an ES_Descriptor's DecoderConfigDescriptor (ISO 14496-1).
function objectTypeOf(view, at, end) {
  const descriptor = (position, tag) => {
    if (position >= end || view.getUint8(position) !== tag) throw new NotCopyable("a bad esds");
    let next = position + 1;
    for (let i = 0; i < 4 && next < end && view.getUint8(next++) & 0x80; i += 1);
    return next;
  };
  let position = descriptor(at, 0x03) + 2; // ES_ID
  const flags = view.getUint8(position++);
  if (flags & 0x80) position += 2; // dependsOn_ES_ID
  if (flags & 0x40) position += 1 + view.getUint8(position); // URL
  if (flags & 0x20) position += 2; // OCR_ES_Id
  position = descriptor(position, 0x04);
  if (position >= end) throw new NotCopyable("a bad esds");
  return view.getUint8(position);
}

// ---- the track's timing ----

// Everything in the track's own time units: presentation time p shows media time
// mediaTime + (p - empty); the presentation ends at media time segmentEnd.
function trackOf(trak, movieTimescale) {
  const { mdhd, minf } = trak.mdia;
  const timescale = mdhd.timescale;
  const { stts } = minf.stbl;
  const samples = trak.samples;
  const count = stts.sample_counts.reduce((sum, n) => sum + n, 0);
  if (!samples.length || count !== samples.length || !timescale) {
    throw new NotCopyable("a bad sample table");
  }
  const last = samples[samples.length - 1];
  const mediaEnd = last.dts + stts.sample_deltas[stts.sample_deltas.length - 1];
  const toMedia = (movieUnits) => Math.round((movieUnits * timescale) / movieTimescale);
  const edits = (trak.edts && trak.edts.elst && trak.edts.elst.entries) || [];
  const media = edits[edits.length - 1];
  // No edit, one, or an empty one (time before the sound) and one: what recorders write.
  const followed = edits.length <= 1 || (edits.length === 2 && edits[0].media_time === -1);
  if (!followed || (media && (media.media_time < 0 || media.media_rate_integer !== 1))) {
    throw new NotCopyable("an edit list this page does not follow");
  }
  const mediaTime = media ? media.media_time : 0;
  const segmentEnd =
    media && media.segment_duration
      ? Math.min(mediaEnd, mediaTime + toMedia(media.segment_duration))
      : mediaEnd;
  if (segmentEnd <= mediaTime) throw new NotCopyable("an empty track");
  return {
    samples,
    mediaEnd,
    timescale,
    language: mdhd.language,
    empty: edits.length === 2 ? toMedia(edits[0].segment_duration) : 0,
    mediaTime,
    segmentEnd,
  };
}

// Choose the packets to copy and the copy's timing, all in the track's units.
function copyOf(track, range) {
  const { samples, timescale, empty, mediaTime, segmentEnd } = track;
  const length = empty + segmentEnd - mediaTime;
  if (range.start !== null && range.start * timescale >= length) {
    throw new NotCopyable("a trim that starts past the end"); // the server says so
  }
  // A whole millisecond that is a whole number of units: 10 ms steps at 44.1 kHz.
  const step = timescale / gcd(timescale, 1000);
  const margin = TRIM_MARGIN_SECONDS * timescale;
  const from =
    range.start === null
      ? 0
      : Math.max(0, Math.floor((range.start * timescale - margin) / step) * step);
  const to =
    range.end === null ? length : Math.min(length, Math.ceil(range.end * timescale + margin));
  const mediaFrom = mediaTime + Math.max(0, from - empty);
  const mediaTo = mediaTime + Math.max(0, to - empty);
  if (mediaTo <= mediaFrom) throw new NotCopyable("no sound in the range");
  // From the start, the priming packets the edit list skips are copied too.
  const first = from <= empty ? 0 : Math.max(0, sampleAt(samples, mediaFrom) - PREROLL_PACKETS);
  return {
    first,
    last: sampleAt(samples, mediaTo - 1),
    empty: Math.max(0, empty - from),
    mediaTime: mediaFrom - samples[first].dts,
    segment: mediaTo - mediaFrom,
    shift: from / timescale,
  };
}

function gcd(a, b) {
  return b ? gcd(b, a % b) : a;
}

// Return the index of the packet that holds media time ``time``: the last one not after it.
function sampleAt(samples, time) {
  let low = 0;
  let high = samples.length - 1;
  while (low < high) {
    const middle = Math.ceil((low + high) / 2);
    if (samples[middle].dts <= time) low = middle;
    else high = middle - 1;
  }
  return low;
}

// Read the copied packets, packets close together in one read; return them in chunks of
// the M4A, one a read, each its packets back to back.
async function readPackets(file, samples, copy, deadline) {
  const chunks = [];
  for (let i = copy.first; i <= copy.last; ) {
    if (performance.now() > deadline) throw new NotCopyable("took too long");
    const start = samples[i].offset;
    let end = start + samples[i].size;
    let next = i + 1;
    for (; next <= copy.last; next += 1) {
      const { offset, size } = samples[next];
      const far = offset - end > MAX_GAP_BYTES || offset + size - start > READ_BYTES;
      if (offset < end || far) break;
      end = offset + size;
    }
    if (end > file.size) throw new NotCopyable("a packet past the end of the file");
    const read = new Uint8Array(await file.slice(start, end).arrayBuffer());
    const size = sizeOf(samples, i, next);
    let bytes = read; // packets back to back already, unless other media lie between them
    if (read.length !== size) {
      bytes = new Uint8Array(size);
      for (let at = 0, k = i; k < next; k += 1) {
        const from = samples[k].offset - start;
        bytes.set(read.subarray(from, from + samples[k].size), at);
        at += samples[k].size;
      }
    }
    chunks.push({ bytes, count: next - i });
    i = next;
  }
  return chunks;
}

function sizeOf(samples, first, next) {
  let size = 0;
  for (let k = first; k < next; k += 1) size += samples[k].size;
  return size;
}

// ---- writing the M4A's index ----

// The movie's timescale is the track's, so that the edit list is exact. Nothing is dated
// (creation times are 0): the same copy is the same bytes.
function movieBox(track, copy, chunks, description, dataStart) {
  const { samples, timescale } = track;
  const copied = samples.slice(copy.first, copy.last + 1);
  const ends = [...copied.slice(1).map((sample) => sample.dts), endOf(samples, copy.last, track)];
  const durations = copied.map((sample, i) => ends[i] - sample.dts);
  const mediaDuration = ends[ends.length - 1] - copied[0].dts;
  const duration = copy.empty + copy.segment;
  const edits = copy.empty ? [[copy.empty, -1]] : [];
  edits.push([copy.segment, copy.mediaTime]);

  const wide = Math.max(duration, mediaDuration) >= 2 ** 32;
  const time = (value) => (wide ? u64(value) : u32(value));
  const header = (type, flags, fields, length, ...rest) =>
    fullBox(type, wide ? 1 : 0, flags, time(0), time(0), fields, time(length), ...rest);
  const mvhd = header("mvhd", 0, u32(timescale), duration, u32(0x10000), u16(0x100, 0),
    u32(0, 0, ...IDENTITY_MATRIX, 0, 0, 0, 0, 0, 0, 2));
  const tkhd = header("tkhd", 3, u32(1, 0), duration, u32(0, 0), u16(0, 0, 0x100, 0),
    u32(...IDENTITY_MATRIX, 0, 0));
  const mdhd = header("mdhd", 0, u32(timescale), mediaDuration, u16(track.language, 0));
  const hdlr = fullBox("hdlr", 0, 0, u32(0, "soun", 0, 0, 0), text("SoundHandler"));
  const dinf = box("dinf", fullBox("dref", 0, 0, u32(1), fullBox("url ", 0, 1)));
  // Only the first packet is a sync sample: a seek (the server's trim) decodes from there,
  // through the pre-roll and the margin, and so skips the priming as a play from 0 does.
  const syncSamples = fullBox("stss", 0, 0, u32(1, 1));
  const stbl = box("stbl", description, timeToSample(durations), syncSamples,
    sampleToChunk(chunks), sampleSizes(copied), chunkOffsets(chunks, dataStart));
  const minf = box("minf", fullBox("smhd", 0, 0, u16(0, 0)), dinf, stbl);
  return box("moov", mvhd, box("trak", tkhd, editList(edits), box("mdia", mdhd, hdlr, minf)));
}

function endOf(samples, i, track) {
  return i + 1 < samples.length ? samples[i + 1].dts : track.mediaEnd;
}

// Entries of [segment duration, media time]; -1 is an empty edit, time before the sound.
function editList(edits) {
  const wide = edits.flat().some((value) => Math.abs(value) >= 2 ** 31);
  const entry = ([segment, start]) =>
    wide ? concat(u64(segment), u64(start), u16(1, 0)) : concat(u32(segment, start), u16(1, 0));
  return box("edts", fullBox("elst", wide ? 1 : 0, 0, u32(edits.length), ...edits.map(entry)));
}

function timeToSample(durations) {
  const runs = [];
  for (const duration of durations) {
    const run = runs[runs.length - 1];
    if (run && run[1] === duration) run[0] += 1;
    else runs.push([1, duration]);
  }
  return fullBox("stts", 0, 0, u32(runs.length), words(runs.flat()));
}

function sampleToChunk(chunks) {
  const runs = [];
  chunks.forEach((chunk, i) => {
    if (!runs.length || runs[runs.length - 1][1] !== chunk.count) {
      runs.push([i + 1, chunk.count, 1]);
    }
  });
  return fullBox("stsc", 0, 0, u32(runs.length), words(runs.flat()));
}

function sampleSizes(samples) {
  const sizes = samples.map((sample) => sample.size);
  if (sizes.every((size) => size === sizes[0])) {
    return fullBox("stsz", 0, 0, u32(sizes[0], sizes.length));
  }
  return fullBox("stsz", 0, 0, u32(0, sizes.length), words(sizes));
}

function chunkOffsets(chunks, dataStart) {
  const offsets = [];
  let offset = dataStart;
  for (const chunk of chunks) {
    offsets.push(offset);
    offset += chunk.bytes.length;
  }
  return fullBox("stco", 0, 0, u32(offsets.length), words(offsets));
}

function box(type, ...payload) {
  const body = concat(...payload);
  return concat(u32(8 + body.length, type), body);
}

function fullBox(type, version, flags, ...payload) {
  return box(type, u32(version * 2 ** 24 + flags), ...payload);
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function u16(...values) {
  const out = new DataView(new ArrayBuffer(2 * values.length));
  values.forEach((value, i) => out.setUint16(2 * i, value));
  return new Uint8Array(out.buffer);
}

function u32(...values) {
  return words(values);
}

// Big-endian 32-bit words from numbers (negative ones as two's complement) or four-letter codes.
function words(values) {
  const out = new DataView(new ArrayBuffer(4 * values.length));
  values.forEach((value, i) => {
    out.setUint32(4 * i, typeof value === "string" ? fourcc(value) : value);
  });
  return new Uint8Array(out.buffer);
}

function u64(value) {
  return u32(Math.floor(value / 2 ** 32), value % 2 ** 32);
}

function fourcc(code) {
  return [...code].reduce((sum, char) => sum * 256 + char.charCodeAt(0), 0);
}

function text(value) {
  return new TextEncoder().encode(`${value}\0`);
}

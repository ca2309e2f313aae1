// The .igs decoder of the viewer, written from docs/format.md (versions 1 and 2; field 13, the map
// kinds of texture sets, is accepted but not used: maps are shown as rendered): header, level blocks,
// CRC-32, the adaptive range coder (coder 4), Morton positions, column predictors and float32
// dequantisation. It mirrors imagegs.igsfile.unpack check for check, with the same messages, so
// that a corrupt file reads the same in the page as on the command line.
//
// decodeIGS(bytes, {lod}) -> {header, num, xy, scale, rot, color} with Float32Array columns in the
// file's order: xy (N*2: x, y in image units), scale (N*2: std devs in native pixels, major
// first), rot (N: radians), color (N*C). Every failure throws an IGSFileError.
//
// Numbers: the coder's 32-bit words are kept in JS doubles (exact up to 2^53) and wrapped with
// `>>> 0`; dequantisation rounds to float32 (Math.fround) after every operation, as numpy does.

export class IGSFileError extends Error {
  constructor(message, completeLevels = null) {
    super(message);
    this.name = "IGSFileError";
    this.completeLevels = completeLevels; // set for a file cut inside a level
  }
}

export const MAGIC = [0x89, 0x49, 0x47, 0x53, 0x0d, 0x0a, 0x1a, 0x0a];
const VERSION = 2; // the newest version read: 2 = 1 + the map-kinds field 13 (texture sets)
const MAX_SIDE = 2 ** 20, MAX_CHANNELS = 1024, MAX_LEVELS = 64, MAX_GAUSSIANS = 2 ** 24;
const MAX_HEADER = 2 ** 20, MAX_TOP_K = 64, MIN_BITS = 4, MAX_BITS = 16;
const RANGE_CODER = 4;
const CODER_NAMES = { 1: "brotli", 2: "lzma", 3: "zstd", 4: "range" };
const REQUIRED = [1, 2, 3, 4, 5, 6, 7, 8, 9];
const KNOWN = { 1: new Set([...REQUIRED, 10, 11, 12]), 2: new Set([...REQUIRED, 10, 11, 12, 13]) };
const DEFAULT_NAMES = { 1: ["L"], 2: ["L", "A"], 3: ["R", "G", "B"], 4: ["R", "G", "B", "A"] };

// -- CRC-32 (zlib/PNG) ---------------------------------------------------------------------------

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

// -- bounds-checked reads ------------------------------------------------------------------------

class Reader {
  constructor(data, pos = 0, end = data.length, what = "file") {
    this.data = data; this.pos = pos; this.end = end; this.what = what;
  }
  take(n) {
    if (n < 0 || this.pos + n > this.end) {
      throw new IGSFileError(`truncated ${this.what}: needs ${n} more bytes at offset ${this.pos}, ` +
                             `${this.end - this.pos} left`);
    }
    const b = this.data.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  varint(limit = 2 ** 63) {
    let v = 0, scale = 1;
    for (let i = 0; ; i++) {
      const byte = this.take(1)[0];
      v += (byte & 0x7f) * scale;
      if (!(byte & 0x80)) break;
      scale *= 128;
      if (i >= 8) throw new IGSFileError(`corrupt ${this.what}: varint too long at offset ${this.pos}`);
    }
    if (v > limit) throw new IGSFileError(`corrupt ${this.what}: value ${v} exceeds the limit ${limit}`);
    return v;
  }
  u32() {
    const b = this.take(4);
    return (b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 0;
  }
  done() { return this.pos >= this.end; }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

// -- header --------------------------------------------------------------------------------------

function columnLayout(bits, channels) {
  // bit depth and attribute group (0 scale, 1 rotation, 2 colour) of each non-position column
  const colBits = [bits.scale, bits.scale, bits.rotation], groups = [0, 0, 1];
  for (let c = 0; c < channels; c++) { colBits.push(bits.color); groups.push(2); }
  return { colBits, groups };
}

function parseHeader(data) {
  if (data.length < MAGIC.length || MAGIC.some((b, i) => data[i] !== b)) {
    throw new IGSFileError("not an .igs file (wrong magic number)");
  }
  const r = new Reader(data, MAGIC.length, data.length, "header");
  const version = r.take(1)[0];
  if (version < 1 || version > VERSION) {
    throw new IGSFileError(`unsupported .igs version ${version} (this viewer reads versions 1..${VERSION})`);
  }
  const n = r.varint(MAX_HEADER);
  const raw = r.take(n);
  const crc = r.u32();
  if (crc32(raw) !== crc) throw new IGSFileError("corrupt header (CRC mismatch)");
  const fields = new Map();
  const hr = new Reader(raw, 0, raw.length, "header");
  while (!hr.done()) {
    const fid = hr.varint();
    const body = hr.take(hr.varint(raw.length));
    if (!KNOWN[version].has(fid)) throw new IGSFileError(`unknown header field ${fid} (written by a newer imagegs?)`);
    if (fields.has(fid)) throw new IGSFileError(`header field ${fid} appears twice`);
    fields.set(fid, body);
  }
  const missing = REQUIRED.filter((f) => !fields.has(f));
  if (missing.length) throw new IGSFileError(`header lacks required field(s) [${missing.join(", ")}]`);

  const oneVarint = (fid, lo, hi, name) => {
    const fr = new Reader(fields.get(fid), 0, fields.get(fid).length, `${name} field`);
    const v = fr.varint();
    if (!fr.done() || v < lo || v > hi) throw new IGSFileError(`invalid ${name} ${v} (allowed ${lo}..${hi})`);
    return v;
  };
  const width = oneVarint(1, 1, MAX_SIDE, "width");
  const height = oneVarint(2, 1, MAX_SIDE, "height");
  const channels = oneVarint(3, 1, MAX_CHANNELS, "channel count");
  const topK = oneVarint(5, 0, MAX_TOP_K, "top-K");
  const coder = oneVarint(6, 1, 255, "coder id");
  if (!(coder in CODER_NAMES)) throw new IGSFileError(`unknown entropy coder id ${coder}`);
  const bitsRaw = fields.get(4);
  if (bitsRaw.length !== 4 || !bitsRaw.every((b) => b >= MIN_BITS && b <= MAX_BITS)) {
    throw new IGSFileError(`invalid bit depths [${Array.from(bitsRaw).join(", ")}] ` +
                           `(4 values in ${MIN_BITS}..${MAX_BITS})`);
  }
  const bits = { position: bitsRaw[0], scale: bitsRaw[1], rotation: bitsRaw[2], color: bitsRaw[3] };
  const lr = new Reader(fields.get(7), 0, fields.get(7).length, "levels field");
  const nlev = lr.varint(MAX_LEVELS);
  const levels = [];
  for (let i = 0; i < nlev; i++) levels.push(lr.varint(MAX_GAUSSIANS));
  const total = levels.reduce((a, b) => a + b, 0);
  if (!lr.done() || nlev < 1 || Math.min(...levels) < 1 || total > MAX_GAUSSIANS) {
    throw new IGSFileError(`invalid level sizes [${levels.slice(0, 8).join(", ")}] (1..${MAX_LEVELS} levels, ` +
                           `each >= 1, at most ${MAX_GAUSSIANS} Gaussians)`);
  }
  const rng = fields.get(8);
  if (rng.length !== 4 * (8 + 2 * channels)) {
    throw new IGSFileError(`ranges field has ${rng.length} bytes, expected ${4 * (8 + 2 * channels)}`);
  }
  const ranges = new Float32Array(rng.slice().buffer); // little-endian hosts (every browser today)
  for (let i = 0; i < ranges.length; i += 2) {
    if (!Number.isFinite(ranges[i]) || !Number.isFinite(ranges[i + 1]) || ranges[i + 1] < ranges[i]) {
      throw new IGSFileError("invalid quantisation ranges (non-finite or lo > hi)");
    }
  }
  for (let i = 4; i < 8; i++) {
    if (Math.abs(ranges[i]) > 30) throw new IGSFileError("invalid scale range (log scale beyond +-30)");
  }
  const { colBits, groups } = columnLayout(bits, channels);
  const predsRaw = fields.get(9);
  const predictors = Array.from(predsRaw, (p) => p - 1);
  if (predsRaw.length !== 3 + channels || predictors.some(
    (p, i) => p >= 0 && (p >= i || groups[p] !== groups[i] || colBits[p] !== colBits[i]))) {
    throw new IGSFileError("invalid column predictors");
  }
  const header = {
    width, height, channels, bits, topK, coder, levels, predictors,
    posRange: ranges.slice(0, 4), scaleRange: ranges.slice(4, 8), colorRange: ranges.slice(8),
    channelNames: DEFAULT_NAMES[channels] || null, namesStored: false, groups: null, metadata: {},
    headerBytes: 0, blockBytes: [],
  };
  try {
    if (fields.has(10)) {
      const names = utf8.decode(fields.get(10)).split("\0");
      if (names.length !== channels) throw new IGSFileError(`${names.length} channel names for ${channels} channels`);
      header.channelNames = names;
      header.namesStored = true;
    }
    if (fields.has(11)) {
      const body = fields.get(11);
      const gr = new Reader(body, 0, body.length, "groups field");
      const list = [];
      while (!gr.done()) {
        const start = gr.pos;
        while (gr.take(1)[0] !== 0);
        list.push([utf8.decode(body.subarray(start, gr.pos - 1)), gr.varint(MAX_CHANNELS)]);
      }
      if (list.reduce((a, [, c]) => a + c, 0) !== channels || list.some(([, c]) => c < 1)) {
        throw new IGSFileError(`channel groups do not add up to ${channels} channels`);
      }
      header.groups = list;
    }
    if (fields.has(12)) {
      const meta = JSON.parse(utf8.decode(fields.get(12)));
      if (meta === null || typeof meta !== "object" || Array.isArray(meta)) {
        throw new IGSFileError("metadata is not a JSON object");
      }
      header.metadata = meta;
    }
  } catch (e) {
    if (e instanceof IGSFileError) throw e;
    throw new IGSFileError(`corrupt text field in header (${e.name})`);
  }
  header.headerBytes = r.pos;
  return header;
}

function truncated(complete, levels) {
  return new IGSFileError(`truncated file: ${complete} of ${levels} levels complete` +
                          (complete ? `; decode with lod <= ${complete}` : ""), complete);
}

// -- the range coder (coder 4) -------------------------------------------------------------------

const GAP = 0, COLUMN = 1;
const TOP = 2 ** 24, BOT = 2 ** 16, MASK = 0xffffffff;
const INC = 16, LIMIT = 2 ** 13, CAP_NUM = 15, CAP_DEN = 16, MODEL_BITS = 8, RAW_CHUNK = 16;
const MIN_SYMBOL_BITS = Math.log2(CAP_DEN / CAP_NUM);

function alphabet(width, kind) {
  return kind === GAP ? width + 1 : 2 ** Math.min(width, MODEL_BITS);
}

/** The adaptive models of a file's streams, carried from each level block to the next. */
class Models {
  constructor(widths, kinds) {
    this.widths = widths; this.kinds = kinds;
    this.counts = widths.map((w, s) => new Uint32Array(alphabet(w, kinds[s])).fill(1));
    this.totals = widths.map((w, s) => alphabet(w, kinds[s]));
  }
  update(s, sym) {
    const cnt = this.counts[s];
    let t = this.totals[s];
    if ((cnt[sym] + INC) * CAP_DEN <= CAP_NUM * (t + INC)) {
      cnt[sym] += INC;
      t += INC;
      if (t > LIMIT) {
        t = 0;
        for (let j = 0; j < cnt.length; j++) { cnt[j] = (cnt[j] + 1) >>> 1; t += cnt[j]; }
      }
      this.totals[s] = t;
    }
  }
}

function maxValues(size) {
  return Math.floor((size + 8) * 8 / MIN_SYMBOL_BITS) + 1;
}

// The carry-less renormalisation: the range after shifting out low's top byte, or -1 if none is due.
function shiftRange(low, rng) {
  if ((low ^ ((low + rng) >>> 0)) >>> 0 < TOP) return rng;
  if (rng < BOT) return (-low >>> 0) & (BOT - 1);
  return -1;
}

/** Decode a block of n values per stream (Subbotin's carry-less range coder); returns arrays. */
function rangeDecode(data, n, models) {
  const S = models.widths.length;
  if (S * n > maxValues(data.length)) throw new IGSFileError(`${n} Gaussians cannot fit in ${data.length} bytes`);
  let pos = 0, code = 0, low = 0, rng = MASK;
  const byte = () => (pos < data.length ? data[pos++] : (pos++, 0));
  for (let i = 0; i < 4; i++) code = (code * 256 + byte()) >>> 0;
  const take = (r, cum, freq) => {
    low = (low + r * cum) >>> 0;
    rng = r * freq;
    let nr;
    while ((nr = shiftRange(low, rng)) >= 0) {
      code = (code * 256 + byte()) >>> 0;
      low = (low * 256) >>> 0;
      rng = (nr * 256) >>> 0;
    }
  };
  const out = [];
  for (let s = 0; s < S; s++) {
    const w = models.widths[s], kind = models.kinds[s], cnt = models.counts[s];
    const values = new Float64Array(n); // Morton gaps reach 2^32 - 1
    for (let i = 0; i < n; i++) {
      const tot = models.totals[s];
      let r = Math.floor(rng / tot);
      const target = Math.min(Math.floor(((code - low) >>> 0) / r), tot - 1);
      let sym = 0, cum = 0;
      while (cum + cnt[sym] <= target) { cum += cnt[sym]; sym++; }
      take(r, cum, cnt[sym]);
      models.update(s, sym);
      let nraw, v;
      if (kind === GAP) { nraw = Math.max(sym - 1, 0); v = sym ? 1 : 0; }
      else { nraw = Math.max(w - MODEL_BITS, 0); v = sym; }
      while (nraw > 0) {
        const k = Math.min(nraw, RAW_CHUNK);
        nraw -= k;
        r = Math.floor(rng / 2 ** k);
        const bits = Math.min(Math.floor(((code - low) >>> 0) / r), 2 ** k - 1);
        take(r, bits, 1);
        v = v * 2 ** k + bits;
      }
      values[i] = v;
    }
    out.push(values);
    if (pos > data.length) break;
  }
  if (pos !== data.length) {
    throw new IGSFileError(`block decodes to ${pos > data.length ? "more" : pos} of its ${data.length} bytes`);
  }
  return out;
}

// -- level blocks --------------------------------------------------------------------------------

function widths(header) {
  const { colBits } = columnLayout(header.bits, header.channels);
  return [2 * header.bits.position, ...colBits.map((b, i) => (header.predictors[i] >= 0 ? b + 1 : b))];
}

function decodeLevel(block, n, header, models) {
  const streams = rangeDecode(block, n, models);
  const pb = header.bits.position;
  const x = new Uint32Array(n), y = new Uint32Array(n);
  let m = 0;
  for (let i = 0; i < n; i++) {
    m += streams[0][i];
    if (m >= 2 ** (2 * pb)) throw new IGSFileError("position codes out of range");
    // de-interleave: x on even bits, y on odd bits (m < 2^32, split in two 16-bit halves)
    let xi = 0, yi = 0;
    const lo = m % 65536, hi = Math.floor(m / 65536);
    for (let b = 0; b < 8; b++) {
      xi |= ((lo >>> (2 * b)) & 1) << b | ((hi >>> (2 * b)) & 1) << (b + 8);
      yi |= ((lo >>> (2 * b + 1)) & 1) << b | ((hi >>> (2 * b + 1)) & 1) << (b + 8);
    }
    x[i] = xi; y[i] = yi;
  }
  const { colBits } = columnLayout(header.bits, header.channels);
  const cols = [];
  colBits.forEach((b, j) => {
    const p = header.predictors[j], v = new Int32Array(n), s = streams[j + 1], top = 2 ** b;
    for (let i = 0; i < n; i++) {
      const c = p >= 0 ? s[i] + cols[p][i] - (top - 1) : s[i];
      if (c < 0 || c >= top) throw new IGSFileError("attribute codes out of range");
      v[i] = c;
    }
    cols.push(v);
  });
  return { x, y, cols };
}

// -- dequantisation (float32 arithmetic, as imagegs.quantize.dequantize) -----------------------

const f32 = Math.fround;

function dequant(code, lo, hi, bits) {
  const step = f32(f32(hi - lo) / f32(2 ** bits - 1));
  return f32(lo + f32(code * step));
}

/** Parse and check the header of an .igs file (bytes: Uint8Array). */
export function readHeader(bytes) {
  return parseHeader(bytes);
}

/** Decode the first `lod` levels (default all) of an .igs file's bytes (Uint8Array). */
export function decodeIGS(bytes, { lod = null } = {}) {
  const header = parseHeader(bytes);
  const nlev = header.levels.length;
  if (lod === null || lod === undefined) lod = nlev;
  if (!Number.isInteger(lod) || lod < 1 || lod > nlev) {
    throw new IGSFileError(`level of detail must be 1..${nlev}, got ${lod}`);
  }
  if (header.coder !== RANGE_CODER) {
    throw new IGSFileError(`the viewer reads coder 4 (range) only; this file uses coder ${header.coder} ` +
                           `(${CODER_NAMES[header.coder]}): re-encode it with imagegs encode`);
  }
  const ws = widths(header);
  const models = new Models(ws, ws.map((_, s) => (s === 0 ? GAP : COLUMN)));
  const r = new Reader(bytes, header.headerBytes, bytes.length, "file");
  const C = header.channels, num = header.levels.slice(0, lod).reduce((a, b) => a + b, 0);
  const xy = new Float32Array(2 * num), scale = new Float32Array(2 * num);
  const rot = new Float32Array(num), color = new Float32Array(num * C);
  const pr = header.posRange, sr = header.scaleRange, cr = header.colorRange, b = header.bits;
  const rotStep = f32(Math.PI / 2 ** b.rotation);
  let base = 0;
  for (let i = 0; i < lod; i++) {
    const n = header.levels[i], start = r.pos;
    let size, crc, block;
    try {
      size = r.varint(bytes.length);
      crc = r.u32();
      block = r.take(size);
    } catch (e) {
      if (e instanceof IGSFileError) throw truncated(i, nlev);
      throw e;
    }
    if (crc32(block) !== crc) throw new IGSFileError(`corrupt level ${i + 1} (CRC mismatch)`);
    if (n * ws.length > maxValues(size)) {
      throw new IGSFileError(`level ${i + 1} claims ${n} Gaussians in ${size} bytes: inconsistent`);
    }
    let lv;
    try {
      lv = decodeLevel(block, n, header, models);
    } catch (e) {
      if (e instanceof IGSFileError) throw new IGSFileError(`level ${i + 1}: ${e.message}`);
      throw e;
    }
    for (let k = 0; k < n; k++) {
      const g = base + k;
      xy[2 * g] = dequant(lv.x[k], pr[0], pr[1], b.position);
      xy[2 * g + 1] = dequant(lv.y[k], pr[2], pr[3], b.position);
      scale[2 * g] = f32(Math.exp(dequant(lv.cols[0][k], sr[0], sr[1], b.scale)));
      scale[2 * g + 1] = f32(Math.exp(dequant(lv.cols[1][k], sr[2], sr[3], b.scale)));
      rot[g] = f32(lv.cols[2][k] * rotStep);
      for (let c = 0; c < C; c++) color[g * C + c] = dequant(lv.cols[3 + c][k], cr[2 * c], cr[2 * c + 1], b.color);
    }
    header.blockBytes.push(r.pos - start);
    base += n;
  }
  if (lod === nlev && !r.done()) throw new IGSFileError(`${r.end - r.pos} unexpected bytes after the last level`);
  return { header, num, xy, scale, rot, color };
}

/** How many levels of a file are complete (a progressive download cut between or inside levels). */
export function completeLevels(bytes, header) {
  const r = new Reader(bytes, header.headerBytes, bytes.length, "file");
  let k = 0;
  try {
    for (; k < header.levels.length; k++) {
      const size = r.varint(bytes.length);
      r.take(4 + size);
    }
  } catch (e) {
    if (!(e instanceof IGSFileError)) throw e;
  }
  return k;
}

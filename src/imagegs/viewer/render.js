// Rendering decoded Gaussians, as imagegs.renderer.render does: the image at a virtual size
// vw x vh (any zoom), per pixel the normalised blend of the K Gaussians with the smallest
// quadratic form among those listed for the pixel's 16 x 16 tile. Below the native size each
// output pixel averages sx x sy sub-samples of a finer grid, with each Gaussian widened by the
// anti-aliasing prefilter (renderer/raster.py, project.py, reference.py).
//
// The O(N) work (projection, tile lists for the visible tiles) runs here in JS; the per-pixel
// top-K blend runs in a WebGL2 fragment shader. inspectPixel() is the same blend on the CPU at
// one pixel, in float64, with every channel: the pixel inspector (random access).

export const TILE = 16; // imagegs.renderer.constants.TILE
export const SIGMA_RADIUS = 3.0; // a Gaussian's list radius: 3 sqrt(lambda_max)
export const FILTER_SIGMA = 0.3; // imagegs.renderer.raster.FILTER_SIGMA
export const SUPERSAMPLE = 4; // imagegs.renderer.raster.SUPERSAMPLE
export const BLEND_EPS = 1e-4; // imagegs.defaults.BLEND_EPS
const MAX_K = 64; // imagegs.defaults.MAX_TOP_K
const TEX_W = 2048; // texels per row of the data textures

/** Sub-samples per axis and the sub-sample grid for a vw x vh rendering of a W x H model. */
export function sampling(width, height, vw, vh) {
  const sx = Math.min(SUPERSAMPLE, Math.max(1, Math.ceil(width / vw - 1e-9)));
  const sy = Math.min(SUPERSAMPLE, Math.max(1, Math.ceil(height / vh - 1e-9)));
  return { sx, sy, ws: vw * sx, hs: vh * sy };
}

/** Means (px), conics (A, B, C), radii and amplitude offsets of the first `count` Gaussians on
 * a ws x hs grid (project.prefilter; at or above the native size, project). */
export function projectGaussians(model, count, ws, hs) {
  const { width, height } = model.header;
  const ax = ws / width, ay = hs / height;
  const fs = FILTER_SIGMA * FILTER_SIGMA;
  const fx = fs * Math.max(0, 1 - ax * ax), fy = fs * Math.max(0, 1 - ay * ay);
  const filtered = fx > 0 || fy > 0;
  const means = new Float32Array(2 * count), conics = new Float32Array(3 * count);
  const radii = new Float32Array(count), qoff = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    means[2 * i] = model.xy[2 * i] * ws;
    means[2 * i + 1] = model.xy[2 * i + 1] * hs;
    const c = Math.cos(model.rot[i]), s = Math.sin(model.rot[i]);
    const s0 = model.scale[2 * i] ** 2, s1 = model.scale[2 * i + 1] ** 2;
    const cc = c * c, ss = s * s, cs = c * s;
    const vxx = ax * ax * (cc * s0 + ss * s1), vyy = ay * ay * (ss * s0 + cc * s1);
    const vxy = ax * ay * cs * (s0 - s1);
    const wxx = vxx + fx, wyy = vyy + fy;
    if (filtered) {
      const det = (ax * ay) ** 2 * s0 * s1, grow = fx * vyy + fy * vxx + fx * fy, detf = det + grow;
      conics[3 * i] = wyy / detf; conics[3 * i + 1] = -vxy / detf; conics[3 * i + 2] = wxx / detf;
      qoff[i] = Math.log1p(grow / det);
    } else { // from inverse scales, as project() (no cancellation for thin Gaussians)
      const ix2 = 1 / s0, iy2 = 1 / s1;
      conics[3 * i] = (cc * ix2 + ss * iy2) / (ax * ax);
      conics[3 * i + 1] = cs * (ix2 - iy2) / (ax * ay);
      conics[3 * i + 2] = (ss * ix2 + cc * iy2) / (ay * ay);
    }
    const half = 0.5 * (wxx - wyy);
    radii[i] = SIGMA_RADIUS * Math.sqrt(0.5 * (wxx + wyy) + Math.sqrt(half * half + vxy * vxy));
  }
  return { count, ws, hs, means, conics, radii, qoff };
}

// Whether Gaussian i's circle meets tile (tx, ty) of the ws x hs grid (reference.tile_lists).
function hitsTile(p, i, tx, ty) {
  const x0 = tx * TILE, y0 = ty * TILE, x1 = Math.min(x0 + TILE, p.ws), y1 = Math.min(y0 + TILE, p.hs);
  const mx = p.means[2 * i], my = p.means[2 * i + 1], r = p.radii[i];
  const dx = Math.max(x0 - mx, mx - x1, 0), dy = Math.max(y0 - my, my - y1, 0);
  return dx * dx + dy * dy <= r * r;
}

/** Tile lists for the tiles [tx0, tx1) x [ty0, ty1): per tile (start, count) and the Gaussian ids,
 * each list in increasing id order. */
export function binTiles(p, tx0, ty0, tx1, ty1) {
  const ntx = tx1 - tx0, nt = ntx * (ty1 - ty0);
  const counts = new Uint32Array(nt);
  const span = (i) => {
    const mx = p.means[2 * i], my = p.means[2 * i + 1], r = p.radii[i];
    return [Math.max(tx0, Math.floor((mx - r) / TILE)), Math.min(tx1 - 1, Math.floor((mx + r) / TILE)),
            Math.max(ty0, Math.floor((my - r) / TILE)), Math.min(ty1 - 1, Math.floor((my + r) / TILE))];
  };
  const eachHit = (visit) => {
    for (let i = 0; i < p.count; i++) {
      if (!(p.radii[i] >= 0)) continue;
      const [ax0, ax1, ay0, ay1] = span(i);
      for (let ty = ay0; ty <= ay1; ty++) {
        for (let tx = ax0; tx <= ax1; tx++) {
          if (hitsTile(p, i, tx, ty)) visit((ty - ty0) * ntx + (tx - tx0), i);
        }
      }
    }
  };
  eachHit((t) => { counts[t]++; });
  const starts = new Uint32Array(nt);
  let total = 0;
  for (let t = 0; t < nt; t++) { starts[t] = total; total += counts[t]; }
  const ids = new Uint32Array(total), fill = starts.slice();
  eachHit((t, i) => { ids[fill[t]++] = i; });
  return { starts, counts, ids, ntx };
}

/** The pixel (px, py) of a vw x vh rendering, on the CPU in float64: every channel's value and the
 * Gaussians blended (id, weight share), as imagegs.decode_pixels at that pixel's centre. */
export function inspectPixel(model, p, vw, vh, px, py, topK) {
  const { sx, sy } = sampling(model.header.width, model.header.height, vw, vh);
  const C = model.header.channels, value = new Float64Array(C), used = new Map();
  for (let a = 0; a < sy; a++) {
    for (let b = 0; b < sx; b++) {
      const x = px * sx + b + 0.5, y = py * sy + a + 0.5;
      const tx = Math.floor(x / TILE), ty = Math.floor(y / TILE);
      const cand = [];
      for (let i = 0; i < p.count; i++) {
        if (!hitsTile(p, i, tx, ty)) continue;
        const dx = x - p.means[2 * i], dy = y - p.means[2 * i + 1];
        const q = Math.max(p.conics[3 * i] * dx * dx + 2 * p.conics[3 * i + 1] * dx * dy +
                           p.conics[3 * i + 2] * dy * dy, 0) + p.qoff[i];
        cand.push([q, i]);
      }
      cand.sort((u, v) => u[0] - v[0] || u[1] - v[1]);
      const kept = topK > 0 ? cand.slice(0, topK) : cand;
      let wsum = 0;
      const acc = new Float64Array(C);
      for (const [q, i] of kept) {
        const w = Math.exp(-0.5 * q);
        wsum += w;
        for (let c = 0; c < C; c++) acc[c] += w * model.color[i * C + c];
        used.set(i, (used.get(i) || 0) + w);
      }
      for (let c = 0; c < C; c++) value[c] += acc[c] / (wsum + BLEND_EPS);
      for (const [, i] of kept) used.set(i, used.get(i) / (wsum + BLEND_EPS) / (sx * sy));
    }
  }
  for (let c = 0; c < C; c++) value[c] /= sx * sy;
  const gaussians = [...used].map(([id, share]) => ({ id, share })).sort((u, v) => v.share - u.share);
  return { value: Array.from(value), gaussians };
}

// -- WebGL2 -----------------------------------------------------------------------------------

const VERTEX_SHADER = `#version 300 es
void main() {  // one triangle that covers the viewport
  vec2 p = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2));
  gl_Position = vec4(p * 2.0 - 1.0, 0.0, 1.0);
}`;

// The blend for a top-K of `k` (0: the whole tile), K compiled in: the K-entry arrays then stay
// small and fixed (on a GPU, registers instead of spilled local memory; measured on SwiftShader
// in docs/notes/viewer.md).
const fragmentShader = (k) => `#version 300 es
#define TOP_K ${k}
precision highp float;
precision highp int;
precision highp usampler2D;
uniform sampler2D uGauss;   // 2 texels per Gaussian: (mx, my, A, B), (C, qoff, -, -)
uniform sampler2D uColor;   // 1 texel per Gaussian: the displayed channels
uniform usampler2D uTiles;  // 1 texel per visible tile: (start, count)
uniform usampler2D uList;   // the tile lists' Gaussian ids
uniform sampler2D uOrig;    // the original image (optional)
uniform ivec2 uOffset;      // virtual pixel of the canvas's top-left pixel
uniform ivec2 uVirtual;     // virtual image size vw, vh
uniform ivec2 uSub;         // sub-samples sx, sy
uniform ivec3 uTileWin;     // first visible tile tx0, ty0 and tiles per row
uniform int uCanvasH;
uniform int uGrey;          // one channel: show it as grey
uniform int uSplitX;        // canvas columns < uSplitX show the original
out vec4 outColor;
const int TEX_W = ${TEX_W};
ivec2 at(int i) { return ivec2(i % TEX_W, i / TEX_W); }

vec3 blend(vec2 p, ivec2 sp) {
  ivec2 t = sp / ${TILE};
  uvec2 se = texelFetch(uTiles, at((t.y - uTileWin.y) * uTileWin.z + (t.x - uTileWin.x)), 0).xy;
  int start = int(se.x), end = int(se.x + se.y);
  vec3 acc = vec3(0.0);
  float wsum = 0.0;
#if TOP_K == 0
  for (int j = start; j < end; j++) {
    int id = int(texelFetch(uList, at(j), 0).r);
    vec4 g0 = texelFetch(uGauss, at(2 * id), 0), g1 = texelFetch(uGauss, at(2 * id + 1), 0);
    vec2 d = p - g0.xy;
    float q = max(g0.z * d.x * d.x + 2.0 * g0.w * d.x * d.y + g1.x * d.y * d.y, 0.0) + g1.y;
    float w = exp(-0.5 * q);
    wsum += w;
    acc += w * texelFetch(uColor, at(id), 0).rgb;
  }
#else
  float kq[TOP_K];
  int kid[TOP_K];
  int n = 0;
  for (int j = start; j < end; j++) {
    int id = int(texelFetch(uList, at(j), 0).r);
    vec4 g0 = texelFetch(uGauss, at(2 * id), 0), g1 = texelFetch(uGauss, at(2 * id + 1), 0);
    vec2 d = p - g0.xy;
    float q = max(g0.z * d.x * d.x + 2.0 * g0.w * d.x * d.y + g1.x * d.y * d.y, 0.0) + g1.y;
    if (n == TOP_K && !(q < kq[TOP_K - 1])) continue;
    int k = n < TOP_K ? n++ : TOP_K - 1;  // insert into the sorted list of the K smallest
    while (k > 0 && kq[k - 1] > q) { kq[k] = kq[k - 1]; kid[k] = kid[k - 1]; k--; }
    kq[k] = q;
    kid[k] = id;
  }
  for (int k = 0; k < n; k++) {
    float w = exp(-0.5 * kq[k]);
    wsum += w;
    acc += w * texelFetch(uColor, at(kid[k]), 0).rgb;
  }
#endif
  return acc / (wsum + ${BLEND_EPS.toExponential()});
}

void main() {
  ivec2 c = ivec2(int(gl_FragCoord.x), uCanvasH - 1 - int(gl_FragCoord.y));
  ivec2 v = c + uOffset;
  if (v.x < 0 || v.y < 0 || v.x >= uVirtual.x || v.y >= uVirtual.y) {
    bool dark = ((c.x >> 3) + (c.y >> 3)) % 2 == 0;  // checkerboard outside the image
    outColor = vec4(vec3(dark ? 0.16 : 0.2), 1.0);
    return;
  }
  if (c.x < uSplitX) {
    outColor = vec4(texture(uOrig, (vec2(v) + 0.5) / vec2(uVirtual)).rgb, 1.0);
    return;
  }
  vec3 total = vec3(0.0);
  for (int a = 0; a < uSub.y; a++) {
    for (int b = 0; b < uSub.x; b++) {
      ivec2 sp = ivec2(v.x * uSub.x + b, v.y * uSub.y + a);
      total += blend(vec2(sp) + 0.5, sp);
    }
  }
  vec3 col = clamp(total / float(uSub.x * uSub.y), 0.0, 1.0);
  outColor = vec4(uGrey == 1 ? col.rrr : col, 1.0);
}`;

function compile(gl, type, source) {
  const s = gl.createShader(type);
  gl.shaderSource(s, source);
  gl.compileShader(s);
  if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(`shader: ${gl.getShaderInfoLog(s)}`);
  return s;
}

/** The WebGL2 renderer of one canvas. */
export class GaussianRenderer {
  constructor(canvas) {
    const gl = canvas.getContext("webgl2", { antialias: false, preserveDrawingBuffer: true });
    if (!gl) throw new Error("this browser has no WebGL2");
    this.gl = gl;
    this.canvas = canvas;
    this.programs = new Map(); // K -> {prog, loc}
    this.tex = {};
    for (const name of ["gauss", "color", "tiles", "list", "orig"]) this.tex[name] = gl.createTexture();
    this.setOriginal(null);
    this.vao = gl.createVertexArray();
    this.projection = null;
    this.projKey = "";
  }

  /** The program that blends the top `k` (compiled on first use). */
  _program(k) {
    if (!this.programs.has(k)) {
      const gl = this.gl, prog = gl.createProgram();
      gl.attachShader(prog, compile(gl, gl.VERTEX_SHADER, VERTEX_SHADER));
      gl.attachShader(prog, compile(gl, gl.FRAGMENT_SHADER, fragmentShader(k)));
      gl.linkProgram(prog);
      if (!gl.getProgramParameter(prog, gl.LINK_STATUS)) throw new Error(`program: ${gl.getProgramInfoLog(prog)}`);
      const loc = {};
      for (const name of ["uGauss", "uColor", "uTiles", "uList", "uOrig", "uOffset", "uVirtual", "uSub",
                          "uTileWin", "uCanvasH", "uGrey", "uSplitX"]) {
        loc[name] = gl.getUniformLocation(prog, name);
      }
      this.programs.set(k, { prog, loc });
    }
    return this.programs.get(k);
  }

  _upload(name, data, perTexel, kind) {
    const gl = this.gl;
    const texels = Math.max(1, Math.ceil(data.length / perTexel));
    const rows = Math.ceil(texels / TEX_W), padded = new data.constructor(rows * TEX_W * perTexel);
    if (rows > gl.getParameter(gl.MAX_TEXTURE_SIZE)) {
      throw new Error(`too much data for this GPU's textures (${name}: ${texels.toLocaleString()} texels; ` +
                      "fewer Gaussians, a lower level of detail or a smaller zoom would fit)");
    }
    padded.set(data);
    gl.bindTexture(gl.TEXTURE_2D, this.tex[name]);
    gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1);
    const [internal, format, type] = {
      float: [gl.RGBA32F, gl.RGBA, gl.FLOAT], uint2: [gl.RG32UI, gl.RG_INTEGER, gl.UNSIGNED_INT],
      uint1: [gl.R32UI, gl.RED_INTEGER, gl.UNSIGNED_INT]}[kind];
    gl.texImage2D(gl.TEXTURE_2D, 0, internal, TEX_W, rows, 0, format, type, padded);
    for (const p of [gl.TEXTURE_MIN_FILTER, gl.TEXTURE_MAG_FILTER]) gl.texParameteri(gl.TEXTURE_2D, p, gl.NEAREST);
  }

  /** The model to draw: its first `count` Gaussians, shown through `channels` (1 or 3 indices). */
  setModel(model, count, channels) {
    this.model = model;
    this.count = count;
    this.channels = channels;
    const C = model.header.channels, col = new Float32Array(4 * count);
    for (let i = 0; i < count; i++) {
      channels.forEach((ch, k) => { col[4 * i + k] = model.color[i * C + ch]; });
    }
    this._upload("color", col, 4, "float");
    this.projKey = "";
  }

  /** The original image (an HTMLImageElement / ImageBitmap) for the split view, or null. */
  setOriginal(image) {
    const gl = this.gl;
    gl.bindTexture(gl.TEXTURE_2D, this.tex.orig);
    if (image) gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, gl.RGBA, gl.UNSIGNED_BYTE, image);
    else gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA8, 1, 1, 0, gl.RGBA, gl.UNSIGNED_BYTE, new Uint8Array(4));
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.LINEAR);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE);
  }

  /** The projection for a vw x vh rendering (cached: it changes with the zoom only). */
  project(vw, vh) {
    const key = `${vw}x${vh}`;
    if (this.projKey !== key) {
      const { sx, sy, ws, hs } = sampling(this.model.header.width, this.model.header.height, vw, vh);
      const p = projectGaussians(this.model, this.count, ws, hs);
      p.sx = sx; p.sy = sy;
      const g = new Float32Array(8 * this.count);
      for (let i = 0; i < this.count; i++) {
        g.set([p.means[2 * i], p.means[2 * i + 1], p.conics[3 * i], p.conics[3 * i + 1],
               p.conics[3 * i + 2], p.qoff[i], 0, 0], 8 * i);
      }
      this._upload("gauss", g, 4, "float");
      this.projection = p;
      this.projKey = key;
    }
    return this.projection;
  }

  /** Draw the vw x vh rendering with the canvas's top-left pixel at virtual pixel (ox, oy).
   * topK: the blend size (0 = whole tile); splitX: canvas columns left of it show the original. */
  draw({ vw, vh, ox, oy, topK, splitX = 0 }) {
    const gl = this.gl, cw = this.canvas.width, ch = this.canvas.height, t0 = performance.now();
    const p = this.project(vw, vh);
    const x0 = Math.max(0, ox), y0 = Math.max(0, oy), x1 = Math.min(vw, ox + cw), y1 = Math.min(vh, oy + ch);
    let tx0 = 0, ty0 = 0, tx1 = 1, ty1 = 1;
    if (x1 > x0 && y1 > y0) {
      tx0 = Math.floor(x0 * p.sx / TILE); tx1 = Math.ceil(x1 * p.sx / TILE);
      ty0 = Math.floor(y0 * p.sy / TILE); ty1 = Math.ceil(y1 * p.sy / TILE);
    }
    const bins = binTiles(p, tx0, ty0, tx1, ty1);
    const se = new Uint32Array(2 * bins.counts.length);
    for (let t = 0; t < bins.counts.length; t++) { se[2 * t] = bins.starts[t]; se[2 * t + 1] = bins.counts[t]; }
    this._upload("tiles", se, 2, "uint2");
    this._upload("list", bins.ids, 1, "uint1");
    const prepMs = performance.now() - t0; // the CPU's share: projection, tile lists, uploads
    const { prog, loc: L } = this._program(Math.min(topK, MAX_K));
    gl.viewport(0, 0, cw, ch);
    gl.useProgram(prog);
    const units = [["gauss", "uGauss"], ["color", "uColor"], ["tiles", "uTiles"], ["list", "uList"], ["orig", "uOrig"]];
    units.forEach(([t, u], i) => {
      gl.activeTexture(gl.TEXTURE0 + i);
      gl.bindTexture(gl.TEXTURE_2D, this.tex[t]);
      gl.uniform1i(L[u], i);
    });
    gl.uniform2i(L.uOffset, ox, oy);
    gl.uniform2i(L.uVirtual, vw, vh);
    gl.uniform2i(L.uSub, p.sx, p.sy);
    gl.uniform3i(L.uTileWin, tx0, ty0, bins.ntx);
    gl.uniform1i(L.uCanvasH, ch);
    gl.uniform1i(L.uGrey, this.channels.length === 1 ? 1 : 0);
    gl.uniform1i(L.uSplitX, splitX);
    gl.bindVertexArray(this.vao);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
    return { tiles: bins.counts.length, listed: bins.ids.length, prepMs };
  }

  /** Wait for the GPU (a 1-pixel read forces the frame to finish): for frame timing. */
  finish() {
    const px = new Uint8Array(4);
    this.gl.readPixels(0, 0, 1, 1, this.gl.RGBA, this.gl.UNSIGNED_BYTE, px);
  }

  /** The canvas's pixels, top row first, RGBA. */
  readPixels() {
    const gl = this.gl, w = this.canvas.width, h = this.canvas.height, px = new Uint8Array(4 * w * h);
    gl.readPixels(0, 0, w, h, gl.RGBA, gl.UNSIGNED_BYTE, px);
    const out = new Uint8Array(px.length), row = 4 * w;
    for (let y = 0; y < h; y++) out.set(px.subarray((h - 1 - y) * row, (h - y) * row), y * row);
    return out;
  }
}

// The viewer's page: loads the files (embedded in an exported page, or from the local server),
// decodes them with igs.js, draws them with render.js, and wires the controls: file, level of
// detail, channels, zoom and pan (mouse, wheel, touch, keys), ellipse overlay, original toggle and
// split, pixel inspector and readouts. window.viewer is the page's API (the tests drive it).
import { decodeIGS, readHeader, completeLevels, IGSFileError } from "./igs.js";
import { GaussianRenderer, inspectPixel } from "./render.js";

const $ = (id) => document.getElementById(id);
const MIN_ZOOM = 1 / 64, MAX_ZOOM = 256;
const MAX_ELLIPSES = 20000; // the overlay draws at most this many (the visible ones first)

const ui = {
  files: [], // [{name, bytes}]
  fileIndex: 0,
  original: null, // HTMLImageElement
  model: null, // decodeIGS() result
  lod: 1,
  count: 0,
  channels: [0],
  zoom: 1,
  ox: 0, oy: 0, // virtual pixel at the canvas's top-left
  split: 0, // share of the canvas width that shows the original
  showOriginal: false,
  ellipses: false,
  frameMs: null,
  inspected: null,
  fixedSize: null, // [w, h] canvas pixels set by setSize(); null: follow the window
};
let renderer = null;
let pending = false;

function showError(text) {
  $("error").textContent = text;
  $("error").style.display = "block";
  $("main").style.display = "none";
}

function showWarning(text) {
  $("warning").textContent = text;
  $("warning").style.display = text ? "block" : "none";
}

function virtualSize() {
  const { width, height } = ui.model.header;
  return [Math.max(1, Math.round(width * ui.zoom)), Math.max(1, Math.round(height * ui.zoom))];
}

function fileBytesAt(lod) {
  const h = ui.model.header;
  return h.headerBytes + h.blockBytes.slice(0, lod).reduce((a, b) => a + b, 0);
}

// -- drawing -----------------------------------------------------------------------------------

function drawNow() {
  pending = false;
  if (!ui.model) return;
  try {
    drawFrame();
  } catch (e) { // a GPU limit: say so instead of leaving a stale canvas
    showError(`${ui.files[ui.fileIndex].name}: ${e.message}`);
    window.viewer.error = e.message;
  }
}

function drawFrame() {
  const [vw, vh] = virtualSize();
  const splitX = splitColumn();
  const t0 = performance.now();
  ui.lastDraw = renderer.draw({ vw, vh, ox: ui.ox, oy: ui.oy, topK: ui.model.header.topK, splitX });
  renderer.finish();
  const ms = performance.now() - t0;
  ui.frameMs = ui.frameMs === null ? ms : 0.8 * ui.frameMs + 0.2 * ms;
  ui.lastFrameMs = ms;
  drawOverlay(vw, vh, splitX);
  updateReadouts(vw, vh);
}

function splitColumn() {
  const cw = renderer.canvas.width;
  return ui.original ? (ui.showOriginal ? cw : Math.round(ui.split * cw)) : 0;
}

function redraw() {
  if (!pending) {
    pending = true;
    requestAnimationFrame(drawNow);
  }
}

function drawOverlay(vw, vh, splitX) {
  const cv = $("overlay"), ctx = cv.getContext("2d");
  ctx.clearRect(0, 0, cv.width, cv.height);
  if (splitX > 0 && splitX < cv.width) {
    ctx.strokeStyle = "#fff";
    ctx.beginPath(); ctx.moveTo(splitX + 0.5, 0); ctx.lineTo(splitX + 0.5, cv.height); ctx.stroke();
  }
  if (ui.inspected) { // the inspected pixel
    const [px, py] = ui.inspected.pixel; // a virtual pixel is a canvas pixel
    ctx.strokeStyle = "#0ff";
    ctx.strokeRect(px - ui.ox - 2.5, py - ui.oy - 2.5, 6, 6);
  }
  if (!ui.ellipses) return;
  const m = ui.model, ax = vw / m.header.width, ay = vh / m.header.height;
  ctx.lineWidth = 1;
  ctx.strokeStyle = "rgba(255, 255, 80, 0.7)";
  ctx.beginPath();
  let drawn = 0;
  for (let i = 0; i < ui.count && drawn < MAX_ELLIPSES; i++) {
    const x = m.xy[2 * i] * vw - ui.ox, y = m.xy[2 * i + 1] * vh - ui.oy;
    const rx = m.scale[2 * i] * ax, ry = m.scale[2 * i + 1] * ay, r = Math.max(rx, ry);
    if (x + r < 0 || y + r < 0 || x - r > cv.width || y - r > cv.height) continue;
    ctx.moveTo(x + rx * Math.cos(m.rot[i]), y + rx * Math.sin(m.rot[i]));
    ctx.ellipse(x, y, rx, ry, m.rot[i], 0, 2 * Math.PI); // 1-sigma ellipse (axes scaled per axis)
    drawn++;
  }
  ctx.stroke();
}

function updateReadouts(vw, vh) {
  const h = ui.model.header, bytes = fileBytesAt(ui.lod), total = ui.files[ui.fileIndex].bytes.length;
  const rows = [
    ["size", `${h.width} x ${h.height}, ${h.channels} ch`],
    ["Gaussians", `${ui.count.toLocaleString()} of ${ui.model.totalNum.toLocaleString()}`],
    ["levels", `${ui.lod} of ${h.levels.length}`],
    ["top-K", h.topK ? String(h.topK) : "whole tile"],
    ["bytes", `${bytes.toLocaleString()}` + (bytes !== total ? ` of ${total.toLocaleString()}` : "")],
    ["bpp", (8 * bytes / (h.width * h.height)).toFixed(4)],
    ["bits", `${h.bits.position},${h.bits.scale},${h.bits.rotation},${h.bits.color}`],
    ["view", `${vw} x ${vh}`],
    ["frame", ui.frameMs === null ? "-" : `${ui.frameMs.toFixed(1)} ms`],
  ];
  $("readouts").replaceChildren(...rows.map(([k, v]) => {
    const tr = document.createElement("tr");
    tr.innerHTML = "<td></td><td></td>";
    tr.children[0].textContent = k;
    tr.children[1].textContent = v;
    tr.dataset.key = k;
    return tr;
  }));
  $("zoom-text").textContent = ` ${(100 * ui.zoom).toFixed(ui.zoom < 0.1 ? 1 : 0)}%`;
}

// -- inspector ---------------------------------------------------------------------------------

function inspectAt(px, py) {
  const [vw, vh] = virtualSize();
  if (px < 0 || py < 0 || px >= vw || py >= vh) return null;
  const p = renderer.project(vw, vh);
  const r = inspectPixel(ui.model, p, vw, vh, px, py, ui.model.header.topK);
  r.pixel = [px, py];
  r.xy = [(px + 0.5) / vw, (py + 0.5) / vh];
  ui.inspected = r;
  const names = ui.model.header.channelNames;
  const lines = [`pixel (${px}, ${py}) of ${vw} x ${vh}`, `x, y = ${r.xy[0].toFixed(5)}, ${r.xy[1].toFixed(5)}`];
  r.value.forEach((v, c) => lines.push(`${names ? names[c] : "ch " + c}: ${v.toFixed(4)}` +
                                       ` (${Math.round(255 * Math.min(1, Math.max(0, v)))})`));
  lines.push(`${r.gaussians.length} Gaussians blended:`);
  const C = ui.model.header.channels;
  for (const g of r.gaussians.slice(0, 16)) {
    const level = levelOf(g.id);
    const col = Array.from(ui.model.color.subarray(g.id * C, g.id * C + Math.min(C, 3)), (v) => v.toFixed(2));
    lines.push(`  #${g.id} (level ${level}) ${(100 * g.share).toFixed(1)}%  [${col.join(", ")}]`);
  }
  $("inspector").textContent = lines.join("\n");
  $("inspector").style.whiteSpace = "pre";
  drawOverlay(vw, vh, splitColumn());
  return r;
}

function levelOf(id) {
  let end = 0;
  const lv = ui.model.header.levels;
  for (let k = 0; k < lv.length; k++) { end += lv[k]; if (id < end) return k + 1; }
  return lv.length;
}

// -- state changes ------------------------------------------------------------------------------

function setLod(lod) {
  const lv = ui.model.header.levels;
  ui.lod = Math.max(1, Math.min(ui.model.levelsDecoded, lod));
  ui.count = lv.slice(0, ui.lod).reduce((a, b) => a + b, 0);
  renderer.setModel(ui.model, ui.count, ui.channels);
  $("lod").value = String(ui.lod);
  $("lod-text").textContent = ` ${ui.lod} / ${lv.length} (${ui.count.toLocaleString()} Gaussians)`;
  redraw();
}

function setChannels(list) {
  ui.channels = list;
  renderer.setModel(ui.model, ui.count, ui.channels);
  redraw();
}

function channelChoices(h) {
  const names = h.channelNames || Array.from({ length: h.channels }, (_, c) => `channel ${c}`);
  const choices = [];
  if (h.groups) {
    let start = 0;
    for (const [name, n] of h.groups) {
      if (n === 1 || n >= 3) choices.push([n === 1 ? name : `${name} (RGB)`, n === 1 ? [start] : [start, start + 1, start + 2]]);
      start += n;
    }
  } else if (h.channels >= 3) {
    choices.push([names.slice(0, 3).join(""), [0, 1, 2]]);
  }
  if (h.channels !== 3 || h.groups) names.forEach((n, c) => choices.push([n, [c]]));
  const seen = new Set();
  return choices.filter(([, l]) => !seen.has(l.join()) && seen.add(l.join()));
}

function setZoom(zoom, anchorX, anchorY) {
  // keep the image point under the canvas pixel (anchorX, anchorY) in place
  const z = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, zoom));
  const fx = (ui.ox + anchorX) / ui.zoom, fy = (ui.oy + anchorY) / ui.zoom;
  ui.zoom = z;
  ui.ox = Math.round(fx * z - anchorX);
  ui.oy = Math.round(fy * z - anchorY);
  redraw();
}

function fitZoom() {
  const cv = renderer.canvas, h = ui.model.header;
  ui.zoom = Math.min(cv.width / h.width, cv.height / h.height);
  const [vw, vh] = virtualSize();
  ui.ox = Math.round((vw - cv.width) / 2);
  ui.oy = Math.round((vh - cv.height) / 2);
  redraw();
}

function openFile(index) {
  ui.fileIndex = index;
  const { bytes } = ui.files[index];
  let model, warning = "";
  try {
    model = decodeIGS(bytes);
    model.levelsDecoded = model.header.levels.length;
  } catch (e) {
    if (!(e instanceof IGSFileError)) throw e;
    // a download cut inside or between levels: show the complete levels, and say so
    let complete = 0;
    try { complete = completeLevels(bytes, readHeader(bytes)); } catch (_) { complete = 0; }
    if (complete < 1 || e.completeLevels === null) {
      showError(`${ui.files[index].name}: ${e.message}`);
      ui.model = null;
      window.viewer.error = e.message;
      return;
    }
    model = decodeIGS(bytes, { lod: complete });
    model.levelsDecoded = complete;
    warning = `${ui.files[index].name}: ${e.message}; showing the ${complete} complete level(s)`;
  }
  $("error").style.display = "none";
  $("main").style.display = "";
  showWarning(warning);
  window.viewer.error = warning || null;
  model.totalNum = model.header.levels.reduce((a, b) => a + b, 0);
  ui.model = model;
  ui.frameMs = null;
  const h = model.header;
  $("lod").max = String(model.levelsDecoded);
  const choices = channelChoices(h);
  $("channels").replaceChildren(...choices.map(([label], k) => new Option(label, String(k))));
  $("channels").onchange = () => setChannels(choices[Number($("channels").value)][1]);
  $("channels-box").style.display = choices.length > 1 ? "" : "none";
  ui.channels = choices[0][1];
  ui.lod = model.levelsDecoded;
  setLod(ui.lod);
  fitZoom();
}

// -- canvas size and input ----------------------------------------------------------------------

function resize() {
  const stage = $("stage"), dpr = window.devicePixelRatio || 1;
  const [w, h] = ui.fixedSize || [Math.max(1, Math.round(stage.clientWidth * dpr)),
                                  Math.max(1, Math.round(stage.clientHeight * dpr))];
  for (const cv of [$("gl"), $("overlay")]) {
    cv.width = w; cv.height = h;
    cv.style.width = `${w / dpr}px`; cv.style.height = `${h / dpr}px`;
  }
  redraw();
}

function canvasPixel(ev) {
  const rect = $("gl").getBoundingClientRect(), s = $("gl").width / rect.width;
  return [(ev.clientX - rect.left) * s, (ev.clientY - rect.top) * s];
}

function wireInput() {
  const stage = $("stage"), pointers = new Map();
  let pinch = null;
  stage.addEventListener("pointerdown", (ev) => {
    stage.setPointerCapture(ev.pointerId);
    pointers.set(ev.pointerId, canvasPixel(ev));
    if (pointers.size === 2) {
      const [a, b] = [...pointers.values()];
      pinch = { dist: Math.hypot(a[0] - b[0], a[1] - b[1]), zoom: ui.zoom };
    }
  });
  const release = (ev) => { pointers.delete(ev.pointerId); if (pointers.size < 2) pinch = null; };
  stage.addEventListener("pointerup", release);
  stage.addEventListener("pointercancel", release);
  stage.addEventListener("pointermove", (ev) => {
    if (!ui.model) return;
    const p = canvasPixel(ev);
    if (pointers.has(ev.pointerId)) {
      const last = pointers.get(ev.pointerId);
      pointers.set(ev.pointerId, p);
      if (pinch && pointers.size === 2) {
        const [a, b] = [...pointers.values()];
        setZoom(pinch.zoom * Math.hypot(a[0] - b[0], a[1] - b[1]) / pinch.dist, (a[0] + b[0]) / 2, (a[1] + b[1]) / 2);
      } else if (pointers.size === 1) {
        ui.ox += Math.round(last[0] - p[0]);
        ui.oy += Math.round(last[1] - p[1]);
        redraw();
      }
      return;
    }
    inspectAt(Math.floor(p[0] + ui.ox), Math.floor(p[1] + ui.oy));
  });
  stage.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    if (!ui.model) return;
    const [x, y] = canvasPixel(ev);
    setZoom(ui.zoom * Math.exp(-ev.deltaY * (ev.deltaMode ? 0.05 : 0.0015)), x, y);
  }, { passive: false });
  window.addEventListener("keydown", (ev) => {
    if (!ui.model || ev.target.tagName === "INPUT" && ev.target.type !== "checkbox") return;
    const cv = renderer.canvas;
    if (ev.key === "+" || ev.key === "=") setZoom(ui.zoom * 1.25, cv.width / 2, cv.height / 2);
    else if (ev.key === "-") setZoom(ui.zoom / 1.25, cv.width / 2, cv.height / 2);
    else if (ev.key === "1") setZoom(1, cv.width / 2, cv.height / 2);
    else if (ev.key === "f") fitZoom();
  });
  $("zoom-fit").onclick = () => fitZoom();
  $("zoom-1").onclick = () => setZoom(1, renderer.canvas.width / 2, renderer.canvas.height / 2);
  $("lod").oninput = () => setLod(Number($("lod").value));
  $("ellipses").onchange = () => { ui.ellipses = $("ellipses").checked; redraw(); };
  $("original").onchange = () => { ui.showOriginal = $("original").checked; redraw(); };
  $("split").oninput = () => { ui.split = Number($("split").value); redraw(); };
  $("file").onchange = () => openFile(Number($("file").value));
  new ResizeObserver(resize).observe(stage);
}

// -- loading ------------------------------------------------------------------------------------

function fromBase64(b64) {
  const s = atob(b64), out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the original image does not load"));
    img.src = src;
  });
}

async function loadFiles() {
  const embedded = document.getElementById("imagegs-data");
  if (embedded) {
    const data = JSON.parse(embedded.textContent);
    ui.files = data.files.map((f) => ({ name: f.name, bytes: fromBase64(f.data) }));
    if (data.original) ui.original = await loadImage(`data:image/png;base64,${data.original.data}`);
    return;
  }
  const manifest = await (await fetch("manifest.json")).json();
  ui.files = await Promise.all(manifest.files.map(async (f) => ({
    name: f.name, bytes: new Uint8Array(await (await fetch(f.url)).arrayBuffer()),
  })));
  if (manifest.original) ui.original = await loadImage(manifest.original.url);
}

async function start() {
  await loadFiles();
  renderer = new GaussianRenderer($("gl"));
  if (ui.original) renderer.setOriginal(ui.original);
  $("original-box").style.display = ui.original ? "" : "none";
  $("file").replaceChildren(...ui.files.map((f, i) => new Option(f.name, String(i))));
  $("file-box").style.display = ui.files.length > 1 ? "" : "none";
  document.title = `${ui.files[0].name} - imagegs viewer`;
  wireInput();
  resize();
  openFile(0);
}

window.viewer = {
  ui,
  error: null,
  /** Fix the canvas at w x h pixels (null: follow the window). */
  setSize(w, h) { ui.fixedSize = w ? [w, h] : null; resize(); },
  /** Show the virtual image at zoom z (its size: round(W z) x round(H z)) from virtual pixel (ox, oy). */
  setView(z, ox = 0, oy = 0) { ui.zoom = z; ui.ox = ox; ui.oy = oy; redraw(); },
  setLod,
  openFile,
  /** Draw now and return the canvas's RGBA pixels (top row first) as base64. */
  readPixels() {
    drawNow();
    const px = renderer.readPixels();
    let s = "";
    for (let i = 0; i < px.length; i += 8192) s += String.fromCharCode(...px.subarray(i, i + 8192));
    return btoa(s);
  },
  inspect: inspectAt,
  /** Times (ms) of n frames drawn and finished one after another, each panned by one pixel (so
   * the tile lists are rebuilt): the whole frame, and its CPU part (projection, lists, uploads). */
  timeFrames(n) {
    const frame = [], cpu = [];
    for (let i = 0; i < n; i++) {
      ui.ox += i % 2 ? 1 : -1;
      drawNow();
      frame.push(ui.lastFrameMs);
      cpu.push(ui.lastDraw.prepMs);
    }
    return { frame, cpu, tiles: ui.lastDraw.tiles, listed: ui.lastDraw.listed };
  },
};
window.viewer.ready = start().catch((e) => { showError(String(e && e.message || e)); window.viewer.error = String(e); });

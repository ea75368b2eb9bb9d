// Small SVG charts for the self-contained HTML reports: no scripts, no fonts to fetch, no network.

export interface Series {
  name: string;
  points: [number, number][];
  /** A shaded range around the line, [x, low, high] (the spread over seeds). */
  band?: [number, number, number][];
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
export const color = (i: number): string => PALETTE[i % PALETTE.length]!;

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const fmt = (v: number) => (Math.abs(v) >= 1000 || Number.isInteger(v) ? String(Math.round(v)) : v.toPrecision(3));

/** "Nice" tick values covering [lo, hi]. */
function ticks(lo: number, hi: number, count = 5): number[] {
  const span = hi - lo || 1;
  const raw = span / count, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

export function lineChart(title: string, xLabel: string, yLabel: string, series: Series[], width = 640, height = 320): string {
  const m = { l: 56, r: 150, t: 28, b: 40 };
  height = Math.max(height, m.t + m.b + 18 * series.length); // room for every legend entry
  const all = series.flatMap((s) => [...s.points, ...(s.band ?? []).flatMap(([x, lo, hi]) => [[x, lo], [x, hi]] as [number, number][])])
    .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  if (all.length === 0) return `<p>${esc(title)}: no data</p>`;
  const [x0, x1] = [Math.min(...all.map((p) => p[0])), Math.max(...all.map((p) => p[0]))];
  const [y0, y1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  const w = width - m.l - m.r, h = height - m.t - m.b;
  const X = (x: number) => m.l + ((x - x0) / (x1 - x0 || 1)) * w;
  const Y = (y: number) => m.t + h - ((y - y0) / (y1 - y0 || 1)) * h;
  const grid = [
    ...ticks(x0, x1).map((t) => `<line x1="${X(t)}" x2="${X(t)}" y1="${m.t}" y2="${m.t + h}" class="grid"/><text x="${X(t)}" y="${m.t + h + 16}" text-anchor="middle">${fmt(t)}</text>`),
    ...ticks(y0, y1).map((t) => `<line x1="${m.l}" x2="${m.l + w}" y1="${Y(t)}" y2="${Y(t)}" class="grid"/><text x="${m.l - 6}" y="${Y(t) + 4}" text-anchor="end">${fmt(t)}</text>`),
  ].join('');
  const lines = series.map((s, i) => {
    const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    const d = pts.map(([x, y], j) => `${j ? 'L' : 'M'}${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join('');
    const dots = pts.length <= 40 ? pts.map(([x, y]) => `<circle cx="${X(x).toFixed(1)}" cy="${Y(y).toFixed(1)}" r="2.5" fill="${color(i)}"/>`).join('') : '';
    const band = (s.band ?? []).filter((p) => p.every(Number.isFinite));
    const area = band.length > 1
      ? `<path d="${[...band.map(([x, , hi], j) => `${j ? 'L' : 'M'}${X(x).toFixed(1)},${Y(hi).toFixed(1)}`), ...[...band].reverse().map(([x, lo]) => `L${X(x).toFixed(1)},${Y(lo).toFixed(1)}`)].join('')}Z" fill="${color(i)}" fill-opacity="0.18" stroke="none"/>`
      : '';
    const legend = `<rect x="${m.l + w + 12}" y="${m.t + i * 18}" width="12" height="3" fill="${color(i)}"/><text x="${m.l + w + 30}" y="${m.t + i * 18 + 5}">${esc(s.name)}</text>`;
    return `${area}<path d="${d}" fill="none" stroke="${color(i)}" stroke-width="1.6"/>${dots}${legend}`;
  }).join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(title)}">`
    + `<style>text{font:11px sans-serif;fill:#333}.grid{stroke:#e4e4e4}.title{font:bold 13px sans-serif}</style>`
    + `<text x="${m.l}" y="16" class="title">${esc(title)}</text>${grid}`
    + `<rect x="${m.l}" y="${m.t}" width="${w}" height="${h}" fill="none" stroke="#999"/>${lines}`
    + `<text x="${m.l + w / 2}" y="${height - 6}" text-anchor="middle">${esc(xLabel)}</text>`
    + `<text transform="translate(14 ${m.t + h / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text></svg>`;
}

/**
 * Rows × columns of values as coloured cells: white at 0, blue at `even` (an even share), red at
 * twice it and above, with that scale drawn beside the title. Used for the experts' share of tokens over training.
 */
export function heatmap(title: string, rowLabel: (r: number) => string, columnLabels: string[], values: number[][], even: number,
  width = 640): string {
  const rows = values.length, cols = columnLabels.length;
  const m = { l: 72, r: 20, t: 28, b: 36 };
  const cw = (width - m.l - m.r) / Math.max(1, cols), ch = 16;
  const height = m.t + rows * ch + m.b;
  const shade = (v: number) => {
    const t = Math.min(v / (2 * even), 1);
    const [r, g, b] = t < 0.5 ? [255 - 2 * t * 200, 255 - 2 * t * 120, 255] : [55 + (t - 0.5) * 2 * 200, 135 - (t - 0.5) * 2 * 110, 255 - (t - 0.5) * 2 * 225];
    return `rgb(${r | 0},${g | 0},${b | 0})`;
  };
  const cells = values.map((row, r) => row.map((v, c) =>
    `<rect x="${(m.l + c * cw).toFixed(1)}" y="${m.t + r * ch}" width="${(cw + 0.5).toFixed(1)}" height="${ch}" fill="${shade(v)}"><title>${esc(rowLabel(r))}, ${esc(columnLabels[c]!)}: ${(v / even).toFixed(2)}× even</title></rect>`).join('')).join('');
  const labels = values.map((_, r) => `<text x="${m.l - 6}" y="${m.t + r * ch + 12}" text-anchor="end">${esc(rowLabel(r))}</text>`).join('');
  const every = Math.max(1, Math.ceil(cols / 8));
  const xlabels = columnLabels.map((l, c) => (c % every === 0 ? `<text x="${(m.l + c * cw + cw / 2).toFixed(1)}" y="${m.t + rows * ch + 14}" text-anchor="middle">${esc(l)}</text>` : '')).join('');
  // The colour scale: 0× to 2× an even share, in the top right corner.
  const scaleW = 160, sx = width - m.r - scaleW, steps = 20;
  const scale = Array.from({ length: steps }, (_, i) =>
    `<rect x="${(sx + (i * scaleW) / steps).toFixed(1)}" y="8" width="${(scaleW / steps + 0.5).toFixed(1)}" height="10" fill="${shade((2 * even * i) / (steps - 1))}"/>`).join('')
    + [0, 1, 2].map((t) => `<text x="${(sx + (t * scaleW) / 2).toFixed(1)}" y="27" text-anchor="middle" class="small">${t}×</text>`).join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(title)}">`
    + `<style>text{font:11px sans-serif;fill:#333}.title{font:bold 13px sans-serif}.small{font:9px sans-serif}</style>`
    + `<text x="${m.l}" y="16" class="title">${esc(title)}</text>${scale}${cells}${labels}${xlabels}`
    + `<text x="${m.l + (width - m.l - m.r) / 2}" y="${height - 6}" text-anchor="middle">step (share of tokens against an even share: scale at the top right)</text></svg>`;
}

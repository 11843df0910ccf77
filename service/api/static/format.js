// How numbers, durations, sizes and dates read on the page; seed lists as the API takes them.

export function fmtNum(x, digits = 3) {
  if (x === null || x === undefined || !Number.isFinite(Number(x))) return "–";
  x = Number(x);
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a >= 1e5 || a < 1e-3) return x.toExponential(2);
  return String(Number(x.toPrecision(digits)));
}
export const fmtKimg = (x) => (x === null || x === undefined ? "–" : String(+Number(x).toFixed(3)));
export function fmtPct(f) {
  const pct = 100 * Math.max(0, Math.min(1, Number(f) || 0));
  return pct > 0 && pct < 10 ? `${pct.toFixed(1)}%` : `${Math.floor(pct)}%`; // never "0%" once it has started
}

export function fmtDuration(s) {
  if (s === null || s === undefined || !Number.isFinite(Number(s))) return "–";
  s = Math.max(0, Math.round(s));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
  const hr = Math.floor(m / 60);
  if (hr < 48) return `${hr} h ${String(m % 60).padStart(2, "0")} min`;
  return `${Math.floor(hr / 24)} d ${hr % 24} h`;
}

export function fmtBytes(n) {
  if (!Number.isFinite(Number(n))) return "–";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  n = Number(n);
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export const fmtDate = (iso) => (iso ? new Date(iso).toLocaleString() : "–");

// '0-3,7' -> [0,1,2,3,7], as gan_core.sampling.parse_seeds; throws with a message to show.
export function parseSeeds(spec, max) {
  const seeds = [];
  for (let part of String(spec).split(",")) {
    part = part.trim();
    if (!part) continue;
    const m = /^(\d+)\s*(?:-\s*(\d+))?$/.exec(part);
    if (!m) throw new Error(`"${part}" is not a seed or a range; use e.g. 0-15 or 1,5,9`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) throw new Error(`seed range "${part}" runs backwards`);
    if (seeds.length + (b - a + 1) > max) throw new Error(`at most ${max} seeds at once`);
    for (let s = a; s <= b; s++) seeds.push(s);
  }
  if (!seeds.length) throw new Error("no seeds given; use e.g. 0-15 or 1,5,9");
  return seeds;
}

export function randomKey() {
  const b = crypto.getRandomValues(new Uint8Array(16)); // randomUUID needs a secure context
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

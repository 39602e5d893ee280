// Small line charts as inline SVG built node by node (no library, no HTML strings).
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  return el;
}

export function lineChart(values, { width = 280, height = 64 } = {}) {
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none", class: "chart", role: "img" });
  const points = values.map((v, i) => [i, v]).filter(([, v]) => v !== null && v !== undefined);
  root.append(svg("line", { x1: 0, y1: height - 1, x2: width, y2: height - 1, class: "axis" }));
  if (points.length < 2) {
    const note = svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "no-data" });
    note.textContent = values.some((v) => v !== null && v !== undefined) ? "collecting samples…" : "no jobs in this window";
    root.append(note);
    return root;
  }
  const max = Math.max(...points.map(([, v]) => v), 1e-9);
  const step = width / Math.max(values.length - 1, 1);
  const coords = points.map(([i, v]) => `${(i * step).toFixed(1)},${(height - 4 - (v / max) * (height - 10)).toFixed(1)}`);
  root.append(svg("polygon", { points: `${coords[0].split(",")[0]},${height - 1} ${coords.join(" ")} ${coords[coords.length - 1].split(",")[0]},${height - 1}`, class: "area" }));
  root.append(svg("polyline", { points: coords.join(" "), class: "line" }));
  return root;
}

// The dashboard's watch panels: a chart of tokens/s and requests over the last minutes, the request log
// (both from GET /api/v0/activity), and each model's source and queue in the model table (modelWatchCells).
// Loaded before app.js; it uses app.js's api(), $() and formatBytes() once the page has loaded.
"use strict";

const ACTIVITY_POLL_MS = 2000;
// Where a model comes from (/api/v0/models `origin`), as the table names it.
const ORIGIN_NAMES = {
  config: "models.toml",
  "hf-cache": "HF cache",
  "model-dir": "Model folder",
  cache: "radis-mlx cache",
  lmstudio: "LM Studio",
  ollama: "Ollama",
};
const watching = { loaded: {} };  // model id → its /api/v0/models/loaded entry
const SVG = "http://www.w3.org/2000/svg";

// The two cells app.js's modelRow adds before its buttons: where the model comes from, and its queue.
function modelWatchCells(m) {
  const source = document.createElement("td");
  source.className = "source";
  source.textContent = ORIGIN_NAMES[m.origin] || m.origin || "–";
  const serving = document.createElement("td");
  serving.className = "serving";
  serving.textContent = servingText(watching.loaded[m.id]);
  return [source, serving];
}

function servingText(loaded) {
  if (!loaded) return "–";
  const parts = [`${loaded.active_requests} active`, `${loaded.queued_requests ?? 0} queued`];
  const stats = loaded.stats || {};
  if (stats.finished != null) parts.push(`${stats.finished} done`);
  return parts.join(" · ");
}

async function refreshActivity() {
  let activity, loaded;
  try {
    [activity, loaded] = await Promise.all([api("/api/v0/activity"), api("/api/v0/models/loaded")]);
  } catch (_) {
    return;  // app.js's refresh shows why (the key panel, the unreachable server)
  }
  watching.loaded = Object.fromEntries(loaded.data.map((m) => [m.id, m]));
  for (const row of document.querySelectorAll("#models tr[data-model]")) {
    const cell = row.querySelector("td.serving");
    if (cell) cell.textContent = servingText(watching.loaded[row.dataset.model]);
  }
  renderChart(activity);
  renderRequestLog(activity.requests);
}

// Tokens/s as a line over requests per interval as bars, oldest on the left, now on the right.
function renderChart(activity) {
  const buckets = activity.buckets;
  const width = 600, height = 140, top = 8;
  const step = width / Math.max(buckets.length, 1);
  const peakRate = Math.max(1, ...buckets.map((b) => b.tokens_per_second));
  const peakRequests = Math.max(1, ...buckets.map((b) => b.requests));
  const y = (value, peak) => height - ((height - top) * value) / peak;
  const bars = [];
  buckets.forEach((b, i) => {
    if (!b.requests) return;
    const bar = document.createElementNS(SVG, "rect");
    bar.setAttribute("x", (i * step + 1).toFixed(1));
    bar.setAttribute("y", y(b.requests, peakRequests).toFixed(1));
    bar.setAttribute("width", Math.max(step - 2, 1).toFixed(1));
    bar.setAttribute("height", (height - y(b.requests, peakRequests)).toFixed(1));
    if (b.failed) bar.setAttribute("class", "failed");
    bar.dataset.start = b.start;  // what each mark shows, readable by tests and tools
    bar.dataset.requests = b.requests;
    bars.push(bar);
  });
  $("chart-requests").replaceChildren(...bars);
  const line = $("chart-tokens");
  const points = buckets.map((b, i) => `${(i * step + step / 2).toFixed(1)},${y(b.tokens_per_second, peakRate).toFixed(1)}`);
  line.setAttribute("points", points.join(" "));
  line.dataset.start = buckets.length ? buckets[0].start : 0;
  line.dataset.rates = buckets.map((b) => b.tokens_per_second).join(",");
  const requests = buckets.reduce((s, b) => s + b.requests, 0);
  const tokens = buckets.reduce((s, b) => s + b.tokens, 0);
  const minutes = Math.round((buckets.length * activity.interval_seconds) / 60);
  const lastFull = buckets.length > 1 ? buckets[buckets.length - 2].tokens_per_second : 0;
  const peak = Math.max(0, ...buckets.map((b) => b.tokens_per_second));
  $("chart-legend").textContent =
    `last ${minutes} min: ${requests} requests, ${Math.round(tokens)} tokens generated; ` +
    `${lastFull.toFixed(1)} tok/s over the last full ${activity.interval_seconds} s, peak ${peak.toFixed(1)}`;
}

function renderRequestLog(requests) {
  const body = $("request-log").querySelector("tbody");
  body.replaceChildren(...requests.map((r) => {
    const row = document.createElement("tr");
    row.className = r.failed ? "failed" : "";
    const cells = [
      new Date(r.time * 1000).toLocaleTimeString(),
      `${r.method} ${r.route}`,
      r.model ?? "–",
      r.prompt_tokens ?? "–",
      r.cached_tokens ?? "–",
      r.completion_tokens ?? "–",
      r.ttft_seconds == null ? "–" : `${r.ttft_seconds.toFixed(2)} s`,
      r.tokens_per_second == null ? "–" : r.tokens_per_second.toFixed(1),
      r.failed && r.status < 400 ? `${r.status} (failed)` : String(r.status),
    ];
    row.replaceChildren(...cells.map((text) => {
      const td = document.createElement("td");
      td.textContent = text;
      return td;
    }));
    return row;
  }));
  $("request-log-empty").hidden = requests.length > 0;
}

window.addEventListener("DOMContentLoaded", () => {
  refreshActivity();
  setInterval(refreshActivity, ACTIVITY_POLL_MS);
});

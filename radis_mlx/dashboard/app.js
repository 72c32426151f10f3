// The radis-mlx dashboard: polls the management API, drives loads/unloads, a streaming chat and embeddings.
"use strict";

const KEY_STORAGE = "radis-mlx-api-key";
const POLL_MS = 2000;
const $ = (id) => document.getElementById(id);
const state = { history: [], abort: null, models: [] };

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function headers() {
  const key = localStorage.getItem(KEY_STORAGE);
  const h = { "content-type": "application/json" };
  if (key) h.authorization = `Bearer ${key}`;
  return h;
}

async function api(path, body) {
  const init = body === undefined ? { headers: headers() } : { method: "POST", headers: headers(), body: JSON.stringify(body) };
  const reply = await fetch(path, init);
  if (!reply.ok) throw await apiError(reply);
  return reply.json();
}

async function apiError(reply) {
  let message = `${reply.status} ${reply.statusText}`;
  try { message = (await reply.json()).error.message; } catch (_) { /* not an OpenAI error body */ }
  if (reply.status === 401) $("key-panel").hidden = false;
  return new ApiError(reply.status, message);
}

function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

function formatBytes(n) {
  if (n == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

function formatDuration(s) {
  s = Math.floor(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h}h ${m}m` : m ? `${m}m ${s % 60}s` : `${s}s`;
}

async function refresh() {
  try {
    const [models, metrics] = await Promise.all([api("/api/v0/models"), api("/api/v0/metrics")]);
    $("status-dot").className = "dot up";
    $("key-panel").hidden = true;
    showError("");
    renderModels(models.data);
    renderMetrics(metrics);
  } catch (err) {
    $("status-dot").className = "dot down";
    showError(err.status === 401 ? "Enter the server's API key to continue." : `Server unreachable: ${err.message}`);
  }
}

function renderMetrics(m) {
  $("m-uptime").textContent = formatDuration(m.uptime_seconds);
  $("m-requests").textContent = m.requests_served;
  $("m-failed").textContent = m.requests_failed;
  $("m-tokens").textContent = m.tokens_generated;
  $("m-loaded").textContent = `${m.models_loaded} / ${m.models_available}`;
  $("m-memory").textContent = `${formatBytes(m.memory_used_bytes)} / ${formatBytes(m.memory_budget_bytes)}`;
  $("m-memory-bar").style.width = `${Math.min(100, (100 * m.memory_used_bytes) / Math.max(m.memory_budget_bytes, 1))}%`;
}

function renderModels(models) {
  state.models = models;
  const body = $("models").querySelector("tbody");
  body.replaceChildren(...models.map(modelRow));
  fillSelect($("chat-model"), models.filter((m) => m.type === "llm" || m.type === "vlm"));
  fillSelect($("embed-model"), models.filter((m) => m.type === "embeddings"));
}

function modelRow(m) {
  const row = document.createElement("tr");
  row.dataset.model = m.id;
  const input = (m.input_modalities || ["text"]).join(" + ");
  const cells = [m.id, m.type, input, m.engine, null, formatBytes(m.size_bytes)];
  for (const text of cells) {
    const td = document.createElement("td");
    if (text === null) {
      td.className = "state";
      const badge = document.createElement("span");
      badge.className = m.state;
      badge.textContent = m.state;
      td.append(badge);
    } else td.textContent = text;
    row.append(td);
  }
  const actions = document.createElement("td");
  const loaded = m.state === "loaded";
  const button = document.createElement("button");
  button.type = "button";
  button.className = loaded ? "unload secondary" : "load";
  button.textContent = loaded ? "Unload" : "Load";
  button.disabled = m.state === "loading" || m.state === "unloading";
  button.addEventListener("click", () => loadOrUnload(button, m.id, loaded));
  actions.append(button);
  row.append(...modelWatchCells(m), actions);  // source and queue: activity.js
  return row;
}

function fillSelect(select, models) {
  const chosen = select.value;
  const ids = models.map((m) => m.id);
  if (ids.join() === [...select.options].map((o) => o.value).join()) return;
  select.replaceChildren(...ids.map((id) => new Option(id, id)));
  if (ids.includes(chosen)) select.value = chosen;
}

async function loadOrUnload(button, model, loaded) {
  button.disabled = true;
  button.textContent = loaded ? "Unloading…" : "Loading…";
  try {
    await api(loaded ? "/api/v0/models/unload" : "/api/v0/models/load", { model });
  } catch (err) {
    showError(`${loaded ? "Unload" : "Load"} of ${model} failed: ${err.message}`);
  }
  await refresh();
}

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  div.textContent = text;
  $("chat-log").append(div);
  $("chat-log").scrollTop = $("chat-log").scrollHeight;
  return div;
}

// Server-sent events from a fetch body: "data: {...}\n\n" events, ending with "data: [DONE]".
async function* sseEvents(reply) {
  const reader = reply.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
      if (data === "[DONE]") return;
      if (data) yield JSON.parse(data);
    }
  }
}

async function sendChat(event) {
  event.preventDefault();
  const text = $("chat-input").value.trim();
  const model = $("chat-model").value;
  if (!text || !model || state.abort) return;
  $("chat-input").value = "";
  state.history.push({ role: "user", content: text });
  addMessage("user", text);
  const out = addMessage("assistant", "");
  const system = $("chat-system").value.trim();
  const messages = system ? [{ role: "system", content: system }, ...state.history] : state.history;
  state.abort = new AbortController();
  $("chat-send").disabled = true;
  $("chat-stop").hidden = false;
  let firstAt = 0;  // speed counts from the first token: a model loading on first use is not decoding
  let usage = null;
  try {
    const reply = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), signal: state.abort.signal,
      body: JSON.stringify({
        model, messages, stream: true, stream_options: { include_usage: true },
        max_tokens: Number($("chat-max-tokens").value) || undefined,
      }),
    });
    if (!reply.ok) throw await apiError(reply);
    for await (const chunk of sseEvents(reply)) {
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.usage) usage = chunk.usage;
      const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
      if (delta && delta.content) {
        firstAt = firstAt || performance.now();
        out.textContent += delta.content;
        $("chat-log").scrollTop = $("chat-log").scrollHeight;
      }
    }
    state.history.push({ role: "assistant", content: out.textContent });
    if (usage) {
      const seconds = Math.max((performance.now() - firstAt) / 1000, 0.001);
      $("chat-stats").textContent =
        `${usage.completion_tokens} tokens in ${seconds.toFixed(1)} s (${(usage.completion_tokens / seconds).toFixed(1)} tok/s), prompt ${usage.prompt_tokens}`;
    }
  } catch (err) {
    if (err.name !== "AbortError") addMessage("error", err.message);
    state.history.pop();  // the unanswered turn does not stay in the history
  } finally {
    state.abort = null;
    $("chat-send").disabled = false;
    $("chat-stop").hidden = true;
    refresh();
  }
}

async function runEmbedding(event) {
  event.preventDefault();
  const input = $("embed-input").value;
  const model = $("embed-model").value;
  if (!input || !model) return;
  $("embed-output").textContent = "…";
  try {
    const reply = await api("/v1/embeddings", { model, input });
    const vector = reply.data[0].embedding;
    const norm = Math.sqrt(vector.reduce((s, x) => s + x * x, 0));
    $("embed-output").textContent =
      `${vector.length} dimensions, ${reply.usage.prompt_tokens} tokens, norm ${norm.toFixed(3)}\n` +
      `[${vector.slice(0, 8).map((x) => x.toFixed(4)).join(", ")}, …]`;
  } catch (err) {
    $("embed-output").textContent = `Error: ${err.message}`;
  }
  refresh();
}

function init() {
  const base = `${location.origin}/v1`;
  $("base-url").textContent = base;
  $("copy-url").addEventListener("click", () => navigator.clipboard && navigator.clipboard.writeText(base));
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(KEY_STORAGE, $("key-input").value.trim());
    $("key-input").value = "";
    refresh();
  });
  $("chat-form").addEventListener("submit", sendChat);
  $("chat-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) sendChat(event);
  });
  $("chat-stop").addEventListener("click", () => state.abort && state.abort.abort());
  $("chat-clear").addEventListener("click", () => { state.history = []; $("chat-log").replaceChildren(); });
  $("embed-form").addEventListener("submit", runEmbedding);
  refresh();
  setInterval(refresh, POLL_MS);
}

init();

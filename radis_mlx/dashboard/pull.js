// The dashboard's "pull a model" box: POST /api/v0/models/pull, its server-sent progress drawn as a bar.
// Loaded before app.js; it uses app.js's headers(), apiError(), sseEvents(), formatBytes() and refresh().
"use strict";

const pulling = { busy: false };

function showPull(text, done, total) {
  const bar = $("pull-progress");
  $("pull-status").textContent = text;
  if (total) {
    bar.max = total;
    bar.value = Math.min(done, total);
  } else {
    bar.removeAttribute("value");  // indeterminate: the source does not say its size
  }
}

async function runPull(event) {
  event.preventDefault();
  const name = $("pull-input").value.trim();
  if (!name || pulling.busy) return;
  pulling.busy = true;
  $("pull-run").disabled = true;
  $("pull-progress").hidden = false;
  $("pull-box").dataset.state = "pulling";
  showPull(`Pulling ${name}…`, 0, null);
  let pulled = null;
  try {
    const reply = await fetch("/api/v0/models/pull", {
      method: "POST", headers: headers(), body: JSON.stringify({ model: name }),
    });
    if (!reply.ok) throw await apiError(reply);
    for await (const message of sseEvents(reply)) {
      if (message.error) throw new Error(message.error.message);
      if (message.status === "downloading") {
        const size = message.total ? ` of ${formatBytes(message.total)}` : "";
        showPull(`Downloading ${name}: ${formatBytes(message.completed)}${size}`, message.completed, message.total);
      } else if (message.status === "success") {
        pulled = message;
      }
    }
    if (!pulled) throw new Error("the pull ended before it finished");
    showPull(`Pulled ${pulled.model}`, 1, 1);
    $("pull-box").dataset.state = "done";
  } catch (err) {
    $("pull-box").dataset.state = "failed";
    showPull(`Pull of ${name} failed: ${err.message}`, 0, 1);
  } finally {
    pulling.busy = false;
    $("pull-run").disabled = false;
    refresh();
  }
}

window.addEventListener("DOMContentLoaded", () => {
  $("pull-form").addEventListener("submit", runPull);
});

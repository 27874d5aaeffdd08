"""``GET /``: a page that starts the long ping with ``jobifyFetch`` (the
browser client the extension serves at ``/jobs/client.js``) and shows its
progress, its result, and a Cancel button that aborts it (the job is
cancelled on the server). The dashboard is at ``/jobs/ui``."""
from __future__ import annotations

from flask import Blueprint, current_app, render_template_string, url_for

bp = Blueprint("web", __name__)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Flask-Jobify demo</title>
<style>
 body { font: 15px/1.5 system-ui, sans-serif; margin: 2rem; max-width: 40rem; }
 progress { width: 100%; height: 14px; } button { font: inherit; padding: .3rem .9rem; }
 #log { color: #555; font-size: 13px; white-space: pre-wrap; }
</style></head><body>
<h1>Long ping, as a job</h1>
<p>Seconds <input id="seconds" type="number" value="8" min="0" max="300" step="1">
<button id="start">Start</button> <button id="cancel" disabled>Cancel</button>
· <a href="{{ dashboard }}">dashboard</a></p>
<progress id="bar" max="100" value="0"></progress>
<p><b id="status">idle</b> <span id="message"></span></p>
<pre id="result"></pre><div id="log"></div>
<script type="module">
import { jobifyFetch, JobFailedError } from "{{ client }}";
const $ = (id) => document.getElementById(id);
let controller = null;
$("start").onclick = async () => {
  controller = new AbortController();
  $("start").disabled = true; $("cancel").disabled = false;
  $("result").textContent = ""; $("log").textContent = ""; $("bar").value = 0;
  $("status").textContent = "submitting";
  const seconds = $("seconds").value;
  try {
    const response = await jobifyFetch(`{{ ping }}?seconds=${seconds}`, { method: "POST" }, {
      signal: controller.signal,
      onProgress: ({ percent, message, status }) => {
        $("bar").value = percent ?? 0;
        $("status").textContent = status;
        $("message").textContent = message ?? "";
        $("log").textContent += `${status} ${percent ?? ""} ${message ?? ""}\\n`;
      },
    });
    $("status").textContent = `done: HTTP ${response.status}`;
    $("result").textContent = await response.text();
  } catch (error) {
    $("status").textContent = error instanceof JobFailedError ? error.message
      : error.name === "AbortError" ? "cancelled" : `error: ${error}`;
  } finally {
    $("start").disabled = false; $("cancel").disabled = true;
  }
};
$("cancel").onclick = () => controller && controller.abort();
</script>
</body></html>
"""


@bp.get("/")
def index() -> str:
    """The demo page."""
    prefix = current_app.config["JOBIFY_URL_PREFIX"]
    return render_template_string(PAGE, client=f"{prefix}/client.js",
                                  ping=url_for("status.long_ping"), dashboard=f"{prefix}/ui/")

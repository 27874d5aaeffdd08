// Flask-Jobify dashboard: live rows and job page from the event streams.
// No dependencies; shipped in the package.

const FINAL = new Set(["succeeded", "failed", "cancelled", "timed_out"]);

function setLive(on) {
  const badge = document.getElementById("live");
  if (badge) badge.classList.toggle("off", !on);
}

function seconds(startIso, endIso) {
  if (!startIso) return "";
  if (!endIso) return "running";
  return `${((Date.parse(endIso) - Date.parse(startIso)) / 1000).toFixed(2)} s`;
}

// Update the elements of `root` marked data-field from a job record.
function fill(root, job) {
  const set = (field, apply) => root.querySelectorAll(`[data-field="${field}"]`).forEach(apply);
  const percent = job.progress.percent;
  set("status", (el) => { el.textContent = job.status; });
  set("progress", (el) => { el.value = percent ?? 0; });
  set("percent", (el) => { el.textContent = percent == null ? "" : `${Math.round(percent)}%`; });
  set("message", (el) => { el.textContent = job.progress.message ?? ""; });
  set("duration", (el) => { el.textContent = seconds(job.startedAt, job.finishedAt); });
  set("attempts", (el) => { el.textContent = `${job.attempts}/${job.maxAttempts}`; });
  root.className = root.className.replace(/\bstatus-\S+/, `status-${job.status}`);
  root.dataset.version = String(job.version);
  if (FINAL.has(job.status)) {
    root.querySelectorAll('input[type="checkbox"]').forEach((box) => {
      box.checked = false;
      box.disabled = true;
    });
  }
}

function newRow(table, job) {
  const link = table.dataset.jobUrl.replace("JOBID", job.id);
  const tr = document.createElement("tr");
  tr.dataset.jobId = job.id;
  tr.className = `status-${job.status}`;
  const cell = (html) => { const td = document.createElement("td"); td.innerHTML = html; tr.append(td); return td; };
  cell(`<input type="checkbox" name="job" form="bulk">`).firstChild.value = job.id;
  const a = document.createElement("a");
  a.className = "id"; a.href = link; a.textContent = `${job.id.slice(0, 8)}…`;
  cell("").append(a);
  cell("").textContent = job.operation;
  cell('<span class="badge" data-field="status"></span>');
  cell('<progress max="100" data-field="progress"></progress> <span class="pct" data-field="percent"></span> <span class="msg" data-field="message"></span>').className = "progress-cell";
  const time = document.createElement("time");
  time.dateTime = job.createdAt; time.textContent = job.createdAt;
  cell("").append(time);
  cell("").dataset.field = "duration";
  cell("").dataset.field = "attempts";
  return tr;
}

function watchTable(table) {
  const body = table.tBodies[0];
  const events = new EventSource(table.dataset.events);
  events.onopen = () => setLive(true);
  events.onerror = () => setLive(false);
  events.addEventListener("job", (message) => {
    const job = JSON.parse(message.data);
    let row = body.querySelector(`tr[data-job-id="${job.id}"]`);
    if (row && Number(row.dataset.version) >= job.version) return;
    if (!row) {
      if (table.dataset.firstPage !== "true") return;
      body.querySelector("tr.empty")?.remove();
      row = newRow(table, job);
      body.prepend(row);
    }
    fill(row, job);
  });
  events.addEventListener("deleted", (message) => {
    const { id } = JSON.parse(message.data);
    body.querySelector(`tr[data-job-id="${id}"]`)?.classList.add("gone");
  });
  events.addEventListener("reload", () => window.location.reload());
  const all = document.getElementById("select-all");
  all?.addEventListener("change", () => {
    body.querySelectorAll('input[type="checkbox"]:not(:disabled)').forEach((box) => {
      box.checked = all.checked;
    });
  });
}

function watchJob(article) {
  const events = new EventSource(article.dataset.events);
  events.onopen = () => setLive(true);
  events.onerror = () => setLive(false);
  const onJob = (message) => {
    const job = JSON.parse(message.data);
    if (Number(article.dataset.version) >= job.version) return;
    fill(article, job);
    if (FINAL.has(job.status)) {
      events.close();
      setTimeout(() => window.location.reload(), 300); // timeline, error, result link
    }
  };
  for (const name of ["status", "progress", "final"]) events.addEventListener(name, onJob);
}

async function refreshStats(section) {
  try {
    const response = await fetch(section.dataset.src, { headers: { Accept: "text/html" } });
    if (response.ok) section.innerHTML = await response.text();
  } catch (error) {
    // offline for a moment: the next refresh tries again
  }
}

const table = document.getElementById("jobs");
if (table) watchTable(table);
const article = document.getElementById("job");
if (article) watchJob(article);
const stats = document.getElementById("stats");
if (stats) {
  refreshStats(stats);
  setInterval(() => refreshStats(stats), 10000);
}

// Flask-Jobify browser client: run a request as a job and get its response.
//
//   import { jobifyFetch } from "/jobs/client.js";
//   const response = await jobifyFetch("/status/long?seconds=5", { method: "POST" }, {
//     onProgress: (progress) => console.log(progress.percent, progress.message),
//     signal: controller.signal,   // abort: the job is cancelled on the server
//   });
//
// A dependency-free ES module, shipped in the Flask-Jobify package and served
// by the extension at {JOBIFY_URL_PREFIX}/client.js. It sends the request
// with the X-Job-Flag header; a 202 Accepted job is followed with
// Server-Sent Events ({prefix}/<id>/events), or by long-polling
// ({prefix}/<id>?wait=S&version=N) where EventSource is missing or the
// stream is refused (503 too_many_streams, a proxy); then the job's
// replayed response is fetched. An answer that is not a job (the server ran
// the view at once) is returned as it is.

export const JOB_FLAG_HEADER = "X-Job-Flag";
export const JOB_ID_HEADER = "X-Job-Id";
const FINAL = new Set(["succeeded", "failed", "cancelled", "timed_out"]);
// Client errors a long-poll asks again after (Retry-After): the others fail.
const RETRIED = new Set([408, 425, 429]);

/** A job that ended without succeeding. `job` is its last record;
 * `response` the response it left (a view's 5xx, replayed), or null. */
export class JobFailedError extends Error {
  constructor(job, response) {
    const why = job.error ? `: ${job.error.message}` : "";
    super(`Job ${job.id} ended as ${job.status}${why}`);
    this.name = "JobFailedError";
    this.job = job;
    this.response = response;
  }
}

function abortError(signal) {
  if (signal && signal.reason !== undefined) return signal.reason;
  return new DOMException("The job was aborted and cancelled.", "AbortError");
}

/**
 * Send `url` with `init` as `fetch` does, as a job, and resolve with the
 * view's own response once the job ends.
 *
 * @param {string|URL} url
 * @param {RequestInit} [init] as for fetch; `credentials` is used for the
 *   follow-ups too (and "include" makes the event stream send cookies).
 * @param {object} [options]
 * @param {(progress: {percent: ?number, message: ?string, status: string,
 *   job: object}) => void} [options.onProgress] called in order, once per
 *   change of the job's progress or status.
 * @param {AbortSignal} [options.signal] aborting it cancels the job on the
 *   server (DELETE) and rejects with the signal's reason.
 * @param {number} [options.wait=25] longest long-poll, in seconds.
 * @param {"auto"|"sse"|"poll"} [options.transport="auto"] how to follow.
 * @returns {Promise<Response>} what a plain fetch of the view would give.
 * @throws {JobFailedError} the job failed, was cancelled or timed out.
 */
export async function jobifyFetch(url, init = {}, options = {}) {
  const { onProgress = null, wait = 25, transport = "auto" } = options;
  const signal = options.signal || init.signal || null;
  const headers = new Headers(init.headers || {});
  headers.set(JOB_FLAG_HEADER, "ON");
  const accepted = await fetch(url, { ...init, headers, signal });
  const jobId = accepted.headers.get(JOB_ID_HEADER);
  if (accepted.status !== 202 || !jobId) return accepted; // ran at once
  const body = await accepted.json().catch(() => ({})); // a proxy may rewrite it
  const where = body.statusUrl || accepted.headers.get("Location");
  if (!where) throw new Error(`The 202 for job ${jobId} says neither statusUrl nor Location.`);
  const statusUrl = new URL(where, accepted.url);
  const follow = { credentials: init.credentials, signal, onProgress, wait };
  const job = await followJob(statusUrl, follow, transport);
  const result = await fetch(new URL(job.resultUrl, statusUrl), {
    credentials: init.credentials, signal,
  });
  if (job.status === "succeeded") return result;
  throw new JobFailedError(job, result.status === 409 ? null : result);
}

/** Follow the job at `statusUrl` until it ends; resolve with its last record. */
export function followJob(statusUrl, follow, transport = "auto") {
  const { signal } = follow;
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) {
      cancel(statusUrl, follow);
      reject(abortError(signal));
      return;
    }
    let done = false;
    let stop = () => {};
    let lastVersion = -1;
    // Each record, in order: report it, and settle when it is final. An
    // onProgress that throws rejects with its error (the job goes on).
    const onJob = (job) => {
      if (done || job.version <= lastVersion) return;
      lastVersion = job.version;
      try {
        if (follow.onProgress) {
          follow.onProgress({
            percent: job.progress.percent, message: job.progress.message,
            status: job.status, job,
          });
        }
      } catch (error) {
        fail(error);
        return;
      }
      if (FINAL.has(job.status)) finish(job);
    };
    const finish = (job) => {
      if (done) return;
      done = true;
      stop();
      if (signal) signal.removeEventListener("abort", onAbort);
      resolve(job);
    };
    const fail = (error) => {
      if (done) return;
      done = true;
      stop();
      if (signal) signal.removeEventListener("abort", onAbort);
      reject(error);
    };
    const onAbort = () => {
      if (done) return;
      cancel(statusUrl, follow);
      fail(abortError(signal));
    };
    if (signal) signal.addEventListener("abort", onAbort);
    const poll = () => {
      stop = longPoll(statusUrl, follow, () => lastVersion, onJob, fail);
    };
    if (transport === "poll" || typeof EventSource === "undefined") {
      poll();
      return;
    }
    const events = new EventSource(`${statusUrl}/events`, {
      withCredentials: follow.credentials === "include",
    });
    stop = () => events.close();
    const onEvent = (message) => {
      let job;
      try {
        job = JSON.parse(message.data);
      } catch (error) {
        fail(new Error(`The job's event stream sent something that is not JSON: ${error}`));
        return;
      }
      onJob(job);
    };
    for (const name of ["status", "progress", "final"]) events.addEventListener(name, onEvent);
    events.addEventListener("deleted", () => fail(new Error("The job was deleted.")));
    events.onerror = () => {
      // CONNECTING: the browser reconnects by itself (Last-Event-ID).
      // CLOSED: the stream was refused (503, 404, a proxy): long-poll.
      if (events.readyState === EventSource.CLOSED && !done) {
        events.close();
        if (transport === "sse") fail(new Error("The job's event stream was refused."));
        else poll();
      }
    };
  });
}

function cancel(statusUrl, follow) {
  // keepalive: the DELETE goes out even if the page is being left.
  fetch(statusUrl, { method: "DELETE", credentials: follow.credentials, keepalive: true })
    .catch(() => {});
}

function longPoll(statusUrl, follow, version, onJob, onError) {
  const controller = new AbortController();
  let stopped = false;
  (async () => {
    let pause = 250;
    while (!stopped) {
      const next = new URL(statusUrl);
      next.searchParams.set("wait", String(follow.wait));
      if (version() >= 0) next.searchParams.set("version", String(version()));
      let response;
      try {
        response = await fetch(next, {
          credentials: follow.credentials, signal: controller.signal,
          headers: { Accept: "application/json" },
        });
      } catch (error) {
        if (stopped) return;
        await new Promise((r) => setTimeout(r, pause));
        pause = Math.min(pause * 2, 5000);
        continue;
      }
      if (response.status === 404) {
        onError(new Error("The job is gone (expired, deleted, or not yours)."));
        return;
      }
      if (response.status >= 400 && response.status < 500 && !RETRIED.has(response.status)) {
        // 400, 401, 403...: asking again gets the same answer.
        const text = await response.text().catch(() => "");
        onError(new Error(`The job's status answered ${response.status}: ${text}`));
        return;
      }
      if (!response.ok) { // 5xx, 408, 429: the server asks to come back
        const retry = Number(response.headers.get("Retry-After")) || 1;
        await new Promise((r) => setTimeout(r, retry * 1000));
        continue;
      }
      pause = 250;
      let job;
      try {
        job = await response.json();
      } catch (error) {
        if (stopped) return;
        onError(new Error(`The job's status at ${next} is not JSON (a proxy's page?): ${error}`));
        return;
      }
      onJob(job);
    }
  })().catch((error) => { if (!stopped) onError(error); }); // never left pending
  return () => {
    stopped = true;
    controller.abort();
  };
}

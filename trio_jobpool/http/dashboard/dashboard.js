// The live dashboard of a trio_jobpool HTTP service. It polls the JSON API once a second (one
// round at a time, paused while the page is hidden) and shows what it gets; the server puts the
// answers of the first round in the page itself (the "first-round" data block), so the numbers
// show as soon as the page has loaded. Every URL is relative, so the page works behind a path
// prefix. Server data only ever reaches the page through textContent and attributes, never as
// HTML: job ids and names are user input.
"use strict";

(() => {
  const POLL_MS = 1000;
  const FETCH_TIMEOUT_MS = 5000;
  const WINDOW_S = 300; // the chart covers the last five minutes
  const RATE_S = 10; // each point of the chart: the jobs ended in the RATE_S seconds before it
  const SUMMARY_S = 60; // the throughput and failure-rate figures cover the last minute
  const JOBS_LIMIT = 25; // the jobs listed (FIRST_JOBS in trio_jobpool/http/_dashboard.py)
  const DUE_LIMIT = 5; // the scheduled jobs listed, next due first (NEXT_DUE, same module)
  const GENERATED_ID = /^[0-9a-f]{32}$/; // a pool's own ids (and UUIDs): shown short, see jobId
  const LIVE = new Set(["scheduled", "queued", "retrying", "running"]);
  const TOKEN_KEY = "trio_jobpool.token";

  const $ = (id) => document.getElementById(id);
  const state = {
    info: null, // api/v1/jobs/pool/info, fetched once per connection
    samples: [], // {t, ended, bad}: page time (s), jobs ended, jobs failed or timed out
    paused: false, // a round fell due while the page was hidden
    rows: new Map(), // row key -> <tr> of the recent jobs
    dueRows: new Map(), // row key -> <tr> of the next due jobs
    scheduleRows: new Map(), // schedule name -> <tr> of the schedules
    keyRows: new Map(), // key -> <tr> of the limited keys
    toggling: new Set(), // names of the schedules whose toggle's PUT is under way
  };

  // ---- talking to the server

  // One request, answer read by `read` (body included) within FETCH_TIMEOUT_MS.
  async function request(path, init, read) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), FETCH_TIMEOUT_MS);
    try {
      const response = await fetch(path, { cache: "no-store", ...init, signal: controller.signal });
      return await read(response);
    } finally {
      clearTimeout(timer);
    }
  }

  function getJSON(path) {
    return request(path, { headers: { Accept: "application/json" } }, (response) => {
      if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
      return response.json();
    });
  }

  // ---- the polling loop: the next round is scheduled once this one is over

  async function round() {
    try {
      if (state.info === null) {
        state.info = await getJSON("api/v1/jobs/pool/info");
        showInfo(state.info);
      }
      // The schedules and the limits are the store's: a store that does not answer them
      // (503) leaves their panel as it was, not the page disconnected (null: not shown anew).
      const [stats, list, schedules, limits] = await Promise.all([
        getJSON("api/v1/jobs/pool/stats"),
        getJSON(`api/v1/jobs?limit=${JOBS_LIMIT}`),
        getJSON("api/v1/schedules").catch(() => null),
        getJSON("api/v1/limits").catch(() => null),
      ]);
      // The next due jobs only while there are any: a pool that schedules nothing is asked
      // nothing more (the list walks every scheduled job).
      const due =
        stats.scheduled_tasks > 0
          ? (await getJSON(`api/v1/jobs?status=scheduled&limit=${DUE_LIMIT}`)).jobs
          : [];
      show(stats, list.jobs, due, schedules?.schedules ?? null, limits);
    } catch (error) {
      state.info = null; // the server may come back with another configuration
      setConnection(false, error);
    }
    setTimeout(tick, POLL_MS);
  }

  function show(stats, jobs, due, schedules, limits) {
    setConnection(true);
    showStats(stats);
    record(stats);
    drawChart();
    showJobs(jobs);
    showDue(due);
    if (schedules !== null) showSchedules(schedules);
    if (limits !== null) showKeys(limits);
  }

  function tick() {
    if (document.hidden) state.paused = true;
    else round();
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && state.paused) {
      state.paused = false;
      round();
    }
  });

  // ---- formatting

  function setText(element, text) {
    if (element.textContent !== text) element.textContent = text; // no needless announcements
  }

  const isNumber = (value) => typeof value === "number" && Number.isFinite(value);
  const count = (value) => (isNumber(value) ? String(value) : "–");

  function duration(seconds) {
    if (!isNumber(seconds)) return "–";
    if (seconds < 1) return `${(seconds * 1000).toFixed(1)} ms`;
    if (seconds < 60) return `${seconds.toFixed(2)} s`;
    return `${(seconds / 60).toFixed(1)} min`;
  }

  const pad = (number, width = 2) => String(number).padStart(width, "0");

  // A due time (seconds since the epoch) in the browser's zone, to the nearest second (a time
  // given to the second comes back a few microseconds either side of it), and how far ahead
  // it is; the title, to the millisecond, in UTC. "–" for a time no Date can hold.
  function dueTime(seconds) {
    return timeAt(seconds, (now) => ahead(seconds - now));
  }

  // As dueTime, for a time that may be past: how long ago it was, or how far ahead it is.
  function pastOrDue(seconds) {
    const relative = (now) => (seconds <= now ? ago(now - seconds) : ahead(seconds - now));
    return timeAt(seconds, relative);
  }

  function timeAt(seconds, relative) {
    const date = new Date(Math.round(seconds) * 1000);
    if (!isNumber(seconds) || Number.isNaN(date.getTime())) return { text: "–", iso: "" };
    const day = `${pad(date.getFullYear(), 4)}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
    const time = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
    const text = `${day} ${time} (${relative(Date.now() / 1000)})`;
    return { text, iso: new Date(seconds * 1000).toISOString() };
  }

  function ago(seconds) {
    if (seconds < 1) return "just now";
    if (seconds < 60) return `${Math.round(seconds)} s ago`;
    if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h ago`;
    return `${Math.round(seconds / 86400)} d ago`;
  }

  // A period in seconds: "every 90 s", "every 15 min", "every 6 h", "every 1 d" when it is a
  // whole number of the unit.
  function period(seconds) {
    return `every ${span(seconds)}`;
  }

  // Seconds as "90 s", "15 min", "6 h", "1 d" (the largest unit they are a whole number of).
  function span(seconds) {
    for (const [unit, size] of [["d", 86400], ["h", 3600], ["min", 60]]) {
      if (seconds >= size && seconds % size === 0) return `${seconds / size} ${unit}`;
    }
    return `${seconds} s`;
  }

  // A key's limit (Limit.to_json()): "at most 2 running", "10 starts per 1 min", both joined
  // by " · "; "none" for no limit.
  function limitText(limit) {
    if (limit === null || limit === undefined) return "none";
    const parts = [];
    if (isNumber(limit.max_running)) parts.push(`at most ${limit.max_running} running`);
    if (limit.rate) parts.push(`${count(limit.rate.count)} starts per ${span(limit.rate.per)}`);
    return parts.join(" · ") || "none";
  }

  function ahead(seconds) {
    if (seconds < 1) return "due now";
    if (seconds < 60) return `in ${Math.round(seconds)} s`;
    if (seconds < 3600) return `in ${Math.round(seconds / 60)} min`;
    if (seconds < 86400) return `in ${(seconds / 3600).toFixed(1)} h`;
    return `in ${Math.round(seconds / 86400)} d`;
  }

  function rate(value) {
    return value === 0 ? "0" : value.toFixed(value >= 10 ? 0 : value >= 1 ? 1 : 2);
  }

  // ---- the header and the numbers

  function setConnection(ok, error) {
    const element = $("connection");
    element.title = ok ? "" : String(error?.message ?? error);
    const next = ok ? "connected" : "disconnected";
    if (element.dataset.state === next) return;
    element.dataset.state = next;
    element.textContent = ok ? "live" : "disconnected, retrying…";
    document.body.classList.toggle("disconnected", !ok);
  }

  function showInfo(info) {
    const parts = [info.version ? `v${info.version}` : "", info.store, info.closed ? "closed" : ""];
    setText($("server-info"), parts.filter(Boolean).join(" · "));
    if (info.token_required) $("token-field").hidden = false;
  }

  function showStats(stats) {
    const numbers = {
      queued: stats.queued_tasks,
      scheduled: stats.scheduled_tasks,
      active: stats.active_workers,
      "max-workers": stats.max_workers,
      submitted: stats.total_submitted,
      completed: stats.total_completed,
      failed: stats.total_failed,
      "timed-out": stats.total_timed_out,
      cancelled: stats.total_cancelled,
      retried: stats.total_retried,
    };
    for (const [id, value] of Object.entries(numbers)) setText($(id), count(value));
    // The pool reports 0 for an average over no attempts: shown as "–", not as "0.0 ms". An
    // attempt ends as a job completed, failed or timed out, as a retry, or cancelled while
    // running (counted in total_cancelled with the jobs cancelled while waiting: then only a
    // non-zero average tells); one starts as one of those or as a running job.
    const ended = stats.total_completed + stats.total_failed + stats.total_timed_out;
    const endedAttempts = ended + stats.total_retried;
    const over = (attempts, seconds) => (attempts > 0 || seconds > 0 ? duration(seconds) : "–");
    setText($("avg-exec"), over(endedAttempts, stats.average_exec_time));
    setText($("p95-exec"), over(endedAttempts, stats.exec_time_p95));
    setText($("avg-wait"), over(endedAttempts + stats.active_workers, stats.average_wait_time));
    const bar = $("worker-bar");
    bar.max = Math.max(1, stats.max_workers || 0);
    bar.value = Math.min(stats.active_workers || 0, bar.max); // active may pass max after a shrink
  }

  // ---- throughput and failure rate

  function record(stats) {
    const t = performance.now() / 1000;
    const ended = stats.total_completed + stats.total_failed + stats.total_timed_out;
    const bad = stats.total_failed + stats.total_timed_out;
    const samples = state.samples;
    const last = samples[samples.length - 1];
    if (last && (ended < last.ended || bad < last.bad)) samples.length = 0; // a new server
    samples.push({ t, ended, bad });
    // Kept: the samples of the chart's window and of the rate window of its leftmost point.
    while (samples.length > 1 && t - samples[1].t >= WINDOW_S + RATE_S) samples.shift();

    const from = samples.find((sample) => t - sample.t <= SUMMARY_S);
    const seconds = t - from.t;
    const endedSince = ended - from.ended;
    setText($("throughput"), seconds > 0 ? `${rate(endedSince / seconds)} jobs/s` : "–");
    setText(
      $("failure-rate"),
      endedSince > 0 ? `${Math.round((100 * (bad - from.bad)) / endedSince)} %` : "–",
    );
  }

  // One point per sample after the first, over the RATE_S seconds before it (over less while
  // the page has been open for less): the jobs ended per second, and the share of those that
  // failed or timed out (null when none ended). A sliding window, not the interval since the
  // sample before: jobs that end one every few seconds make a steady line, not a sawtooth.
  function windowed() {
    const samples = state.samples;
    const points = [];
    let j = 0; // samples[j] is the last sample at or before the window's start
    for (let i = 1; i < samples.length; i++) {
      const b = samples[i];
      const start = Math.max(samples[0].t, b.t - RATE_S);
      while (j + 1 < i && samples[j + 1].t <= start) j++;
      const a = totalsAt(samples[j], samples[j + 1], start);
      const seconds = b.t - start;
      if (seconds <= 0) continue;
      const ended = b.ended - a.ended;
      const failure = ended > 0 ? (b.bad - a.bad) / ended : null;
      points.push({ t: b.t, throughput: ended / seconds, failure });
    }
    return points;
  }

  // The totals at time t, from the samples a and b around it: linear in between (the page only
  // knows that the jobs between two samples ended at some time between them).
  function totalsAt(a, b, t) {
    if (t <= a.t || b.t <= a.t) return a;
    const share = Math.min(1, (t - a.t) / (b.t - a.t));
    return { t, ended: a.ended + share * (b.ended - a.ended), bad: a.bad + share * (b.bad - a.bad) };
  }

  function drawChart() {
    const rates = windowed();
    const latest = rates.at(-1);
    setText($("rate-now"), latest === undefined ? "–" : rate(latest.throughput));
    const canvas = $("chart");
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (width === 0 || height === 0) return;
    if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
    if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
    const context = canvas.getContext("2d");
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, width, height);

    const style = getComputedStyle(canvas);
    const colour = (name) => style.getPropertyValue(name).trim() || "gray";
    const pad = { left: 44, right: 40, top: 10, bottom: 20 };
    const plotHeight = height - pad.top - pad.bottom;
    const now = performance.now() / 1000;
    const points = rates.filter((point) => now - point.t <= WINDOW_S);
    const peak = niceCeiling(Math.max(1, ...points.map((point) => point.throughput)));
    const x = (t) => pad.left + (1 - (now - t) / WINDOW_S) * (width - pad.left - pad.right);
    const yShare = (share) => pad.top + (1 - share) * plotHeight; // 0..1 over the full height

    context.font = "11px system-ui, sans-serif";
    context.lineWidth = 1;
    context.strokeStyle = colour("--grid");
    context.fillStyle = colour("--muted");
    for (const share of [0, 0.5, 1]) {
      const y = Math.round(yShare(share)) + 0.5;
      context.beginPath();
      context.moveTo(pad.left, y);
      context.lineTo(width - pad.right, y);
      context.stroke();
      context.textAlign = "right";
      context.fillText(`${rate(peak * share)}/s`, pad.left - 4, y + 4);
      context.textAlign = "left";
      context.fillText(`${share * 100}%`, width - pad.right + 4, y + 4);
    }
    context.textAlign = "left";
    context.fillText("−5 min", pad.left, height - 4);
    context.textAlign = "right";
    context.fillText("now", width - pad.right, height - 4);

    context.lineWidth = 2;
    const failure = (point) => (point.failure === null ? null : yShare(point.failure));
    plot(context, points, x, (point) => yShare(point.throughput / peak), colour("--throughput"));
    plot(context, points, x, failure, colour("--failure"));
  }

  // A line through the points; a null y breaks it.
  function plot(context, points, x, y, colour) {
    context.strokeStyle = colour;
    context.beginPath();
    let drawing = false;
    for (const point of points) {
      const value = y(point);
      if (value === null) {
        drawing = false;
      } else {
        if (drawing) context.lineTo(x(point.t), value);
        else context.moveTo(x(point.t), value);
        drawing = true;
      }
    }
    context.stroke();
  }

  function niceCeiling(value) {
    const magnitude = 10 ** Math.floor(Math.log10(value));
    return [1, 2, 5, 10].map((step) => step * magnitude).find((nice) => nice >= value);
  }

  // ---- the jobs table: rows are kept and updated in place, so focus and clicks survive a poll

  function showJobs(jobs) {
    showRows($("jobs"), state.rows, jobs, makeRow, updateRow);
    $("jobs-empty").hidden = jobs.length > 0;
  }

  function showDue(jobs) {
    showRows($("due"), state.dueRows, jobs, makeDueRow, updateDueRow);
    $("due-table").hidden = jobs.length === 0;
    $("due-empty").hidden = jobs.length > 0;
  }

  // The rows of `body`, one per job in order, kept in `rows` by key and updated in place.
  function showRows(body, rows, jobs, make, update) {
    const seen = new Set();
    jobs.forEach((job, index) => {
      // An ended job's id may be used again, so the id alone does not name a row.
      let key = `${job.job_id}\u0000${job.submitted_at}`;
      if (seen.has(key)) key += `\u0000${index}`;
      seen.add(key);
      let row = rows.get(key);
      if (row === undefined) {
        row = make(job.job_id);
        rows.set(key, row);
      }
      update(row, job);
      if (body.children[index] !== row) body.insertBefore(row, body.children[index] ?? null);
    });
    for (const [key, row] of rows) {
      if (!seen.has(key)) {
        row.remove();
        rows.delete(key);
      }
    }
  }

  function element(tag, className, parent) {
    const created = document.createElement(tag);
    if (className) created.className = className;
    parent?.append(created);
    return created;
  }

  function makeRow(id) {
    const row = element("tr");
    row.dataset.jobId = id;
    jobId(id, row);
    const names = ["name", "priority", "status", "progress", "attempts", "exec-time", "actions"];
    for (const name of names) element("td", name, row);
    const status = row.querySelector(".status");
    element("span", "badge", status);
    element("span", "error", status);
    const progress = element("progress", "", row.querySelector(".progress"));
    progress.max = 1;
    progress.setAttribute("aria-label", `Progress of job ${id}`);
    element("span", "progress-text", row.querySelector(".progress"));
    return row;
  }

  function makeDueRow(id) {
    const row = element("tr");
    row.dataset.jobId = id;
    jobId(id, row);
    for (const name of ["name", "due", "priority"]) element("td", name, row);
    return row;
  }

  function updateDueRow(row, job) {
    const part = (selector) => row.querySelector(selector);
    setText(part(".name"), job.name ?? "–");
    const due = dueTime(job.scheduled_for);
    setText(part(".due"), due.text);
    part(".due").title = due.iso;
    part(".due").dataset.scheduledFor = String(job.scheduled_for);
    setText(part(".priority"), count(job.priority));
  }

  // ---- the schedules: a row per schedule, by name, with its pause/resume toggle

  function showSchedules(schedules) {
    const body = $("schedules");
    const rows = state.scheduleRows;
    const seen = new Set();
    schedules.forEach((schedule, index) => {
      seen.add(schedule.name);
      let row = rows.get(schedule.name);
      if (row === undefined) {
        row = makeScheduleRow(schedule.name);
        rows.set(schedule.name, row);
      }
      updateScheduleRow(row, schedule);
      if (body.children[index] !== row) body.insertBefore(row, body.children[index] ?? null);
    });
    for (const [name, row] of rows) {
      if (!seen.has(name)) {
        row.remove();
        rows.delete(name);
      }
    }
    $("schedules-table").hidden = schedules.length === 0;
    $("schedules-empty").hidden = schedules.length > 0;
  }

  function makeScheduleRow(name) {
    const row = element("tr");
    row.dataset.schedule = name;
    const nameCell = element("th", "name", row);
    nameCell.scope = "row";
    for (const cell of ["job", "when", "next", "last-run", "counts", "actions"]) {
      element("td", cell, row);
    }
    element("span", "time", row.querySelector(".next"));
    element("span", "state", row.querySelector(".next"));
    element("span", "time", row.querySelector(".last-run"));
    element("code", "last-job", row.querySelector(".last-run"));
    const button = element("button", "toggle", row.querySelector(".actions"));
    button.type = "button";
    // The definition the toggle declares again is the row's latest (updateScheduleRow).
    button.addEventListener("click", () => toggle(row.schedule, button));
    return row;
  }

  function updateScheduleRow(row, schedule) {
    const part = (selector) => row.querySelector(selector);
    row.schedule = schedule;
    row.dataset.paused = String(schedule.paused);
    setText(part(".name"), schedule.name);
    setText(part(".job"), schedule.job_name);
    const when =
      schedule.cron !== null ? `${schedule.cron} (${schedule.tz})` : period(schedule.every);
    setText(part(".when"), when);
    const next = dueTime(schedule.next_run);
    setText(part(".next .time"), next.text);
    part(".next").title = next.iso;
    part(".next").dataset.nextRun = String(schedule.next_run);
    setText(part(".next .state"), schedule.paused ? "paused" : "");
    const last = pastOrDue(schedule.last_run);
    setText(part(".last-run .time"), last.text);
    part(".last-run").title = last.iso;
    setText(part(".last-job"), schedule.last_job_id ?? "");
    part(".last-job").title = schedule.last_job_id ?? "";
    setText(part(".counts"), `${count(schedule.runs)} / ${count(schedule.skipped)}`);
    const button = part("button.toggle");
    setText(button, schedule.paused ? "Resume" : "Pause");
    button.setAttribute("aria-pressed", String(schedule.paused));
    const action = schedule.paused ? "Resume" : "Pause";
    button.setAttribute("aria-label", `${action} schedule ${schedule.name}`);
    button.disabled = state.toggling.has(schedule.name);
  }

  // ---- the limited keys: a row per key (GET api/v1/limits: its "keys", sorted by key)

  function showKeys(limits) {
    const keys = Array.isArray(limits.keys) ? limits.keys : [];
    const own = limits.limits ?? {};
    const body = $("keys");
    const rows = state.keyRows;
    const seen = new Set();
    keys.forEach((stats, index) => {
      seen.add(stats.key);
      let row = rows.get(stats.key);
      if (row === undefined) {
        row = makeKeyRow(stats.key);
        rows.set(stats.key, row);
      }
      updateKeyRow(row, stats, Object.hasOwn(own, stats.key));
      if (body.children[index] !== row) body.insertBefore(row, body.children[index] ?? null);
    });
    for (const [key, row] of rows) {
      if (!seen.has(key)) {
        row.remove();
        rows.delete(key);
      }
    }
    $("keys-table").hidden = keys.length === 0;
    $("keys-empty").hidden = keys.length > 0;
  }

  function makeKeyRow(key) {
    const row = element("tr");
    row.dataset.key = key;
    const keyCell = element("th", "key", row);
    keyCell.scope = "row";
    for (const cell of ["running", "waiting", "limit"]) element("td", cell, row);
    element("span", "text", row.querySelector(".limit"));
    element("span", "default", row.querySelector(".limit"));
    return row;
  }

  // `ownLimit`: the key's limit is its own (else the pool's key_limit, said after it).
  function updateKeyRow(row, stats, ownLimit) {
    const part = (selector) => row.querySelector(selector);
    row.dataset.waiting = String(stats.waiting > 0);
    setText(part(".key"), stats.key);
    setText(part(".running"), count(stats.running));
    setText(part(".waiting"), count(stats.waiting));
    setText(part(".limit .text"), limitText(stats.limit));
    const fromPool = !ownLimit && stats.limit !== null;
    setText(part(".limit .default"), fromPool ? "(the pool's key_limit)" : "");
  }

  // The id cell of a job's row: the id, which a click copies.
  function jobId(id, row) {
    const idCell = element("th", "id", row);
    idCell.scope = "row";
    // The whole id is the element's text (a selection copies all of it, a search finds it); the
    // stylesheet keeps it on one line. A generated id shows as its first 4 and last 6 digits,
    // "…" between: a pool's ids share their first 16 digits and count up in the last 16.
    const code = element("code", "job-id", idCell);
    if (GENERATED_ID.test(id)) {
      code.classList.add("generated");
      element("span", "", code).textContent = id.slice(0, 4);
      element("span", "elided", code).textContent = id.slice(4, -6);
      element("span", "tail", code).textContent = id.slice(-6);
    } else {
      code.textContent = id;
    }
    code.title = `${id}\n(click to copy)`;
    code.tabIndex = 0;
    code.setAttribute("role", "button");
    code.addEventListener("click", () => copyId(id, code));
    code.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        copyId(id, code);
      }
    });
  }

  function updateRow(row, job) {
    const part = (selector) => row.querySelector(selector);
    row.dataset.status = job.status;
    setText(part(".name"), job.name ?? "–");
    setText(part(".priority"), count(job.priority));
    setText(part(".badge"), job.status);
    const due = job.status === "scheduled" ? `due ${dueTime(job.scheduled_for).text}` : "";
    part(".badge").title = due;
    setText(part(".error"), job.error ? `${job.error.type}: ${job.error.message}` : "");
    // A job that ended, or has not started, without ever reporting progress has none to show.
    const progress = isNumber(job.progress) ? job.progress : 0;
    const idle = job.status === "scheduled" || !LIVE.has(job.status);
    const none = idle && progress === 0 && !job.progress_message;
    part("progress").hidden = none;
    part("progress").value = progress;
    const message = job.progress_message ? ` · ${job.progress_message}` : "";
    setText(part(".progress-text"), none ? "–" : `${Math.round(progress * 100)} %${message}`);
    setText(part(".attempts"), count(job.attempts));
    setText(part(".exec-time"), duration(job.exec_time));

    const actions = part(".actions");
    let button = actions.querySelector("button.cancel");
    if (LIVE.has(job.status) && button === null) {
      button = element("button", "cancel", actions);
      button.type = "button";
      button.textContent = "Cancel";
      button.setAttribute("aria-label", `Cancel job ${job.job_id}`);
      button.addEventListener("click", () => cancel(job.job_id, button));
    } else if (!LIVE.has(job.status) && button !== null) {
      button.remove();
    }
  }

  // ---- copying a job's id

  // Copy the whole id to the clipboard; where the page may not (no Clipboard API outside a
  // secure context: plain HTTP from another host), select it, for the user's own copy.
  async function copyId(id, code) {
    try {
      await navigator.clipboard.writeText(id);
      say(`Copied job id ${id}.`, "ok");
    } catch {
      const range = document.createRange();
      range.selectNodeContents(code);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      say(`Job id ${id} selected: copy it with Ctrl+C (⌘C).`, "ok");
    }
  }

  // ---- cancelling

  function say(text, kind) {
    const message = $("message");
    message.textContent = text;
    message.dataset.kind = kind;
  }

  function askForToken() {
    $("token-field").hidden = false;
    $("token").focus();
  }

  // The headers of a request that changes state: the token, if one is typed in. null (and
  // `tell` told the user why) when the server needs a token and none is typed in, or it is not
  // something a header can carry.
  function changeHeaders(what, tell) {
    const token = $("token").value.trim();
    if (state.info?.token_required && token === "") {
      tell(`Enter the API token to ${what}.`, "error");
      askForToken();
      return null;
    }
    const headers = new Headers({ Accept: "application/json" });
    try {
      if (token !== "") headers.set("Authorization", `Bearer ${token}`);
    } catch {
      tell("The token holds characters an HTTP header cannot carry.", "error");
      askForToken();
      return null;
    }
    return headers;
  }

  async function cancel(id, button) {
    const headers = changeHeaders(`cancel job ${id}`, say);
    if (headers === null) return;
    button.disabled = true;
    try {
      const url = `api/v1/jobs/${encodeURIComponent(id)}/cancel`;
      const [response, body] = await request(url, { method: "POST", headers }, async (answer) => [
        answer,
        await answer.json().catch(() => ({})),
      ]);
      if (response.ok) {
        say(`Job ${id} cancelled.`, "ok");
      } else if (response.status === 401) {
        say("The server refused the token: enter a valid API token to cancel jobs.", "error");
        askForToken();
      } else if (response.status === 404) {
        say(`Job ${id} was not found: the server no longer knows it.`, "error");
      } else if (response.status === 409) {
        say(`Job ${id} has already ended.`, "error");
      } else {
        const detail = typeof body?.message === "string" ? `: ${body.message}` : "";
        say(`Could not cancel job ${id} (HTTP ${response.status})${detail}.`, "error");
      }
    } catch {
      say(`Could not cancel job ${id}: the server did not answer.`, "error");
    } finally {
      button.disabled = false;
    }
  }

  // ---- pausing and resuming a schedule: declared again, with `paused` flipped

  function sayOfSchedules(text, kind) {
    const message = $("schedules-message");
    message.textContent = text;
    message.dataset.kind = kind;
  }

  // The body of PUT api/v1/schedules/{name}: the schedule's definition as the list gave it.
  function definition(schedule, paused) {
    return {
      name: schedule.job_name,
      args: schedule.args,
      cron: schedule.cron,
      every: schedule.every,
      tz: schedule.tz,
      priority: schedule.priority,
      timeout: schedule.timeout,
      retry: schedule.retry,
      overlap: schedule.overlap,
      misfire: schedule.misfire,
      paused,
    };
  }

  async function toggle(schedule, button) {
    const name = schedule.name;
    const paused = !schedule.paused;
    const verb = paused ? "pause" : "resume";
    const headers = changeHeaders(`${verb} schedule ${name}`, sayOfSchedules);
    if (headers === null) return;
    headers.set("Content-Type", "application/json");
    state.toggling.add(name);
    button.disabled = true;
    try {
      const url = `api/v1/schedules/${encodeURIComponent(name)}`;
      const init = { method: "PUT", headers, body: JSON.stringify(definition(schedule, paused)) };
      const [response, body] = await request(url, init, async (answer) => [
        answer,
        await answer.json().catch(() => ({})),
      ]);
      if (response.ok) {
        const again = response.status === 201 ? " (it had been deleted: declared again)" : "";
        sayOfSchedules(`Schedule ${name} ${paused ? "paused" : "resumed"}${again}.`, "ok");
        const row = state.scheduleRows.get(name);
        state.toggling.delete(name);
        if (row !== undefined && body?.name === name) updateScheduleRow(row, body);
      } else if (response.status === 401) {
        const refused = `enter a valid API token to ${verb} schedules`;
        sayOfSchedules(`The server refused the token: ${refused}.`, "error");
        askForToken();
      } else {
        const detail = typeof body?.message === "string" ? `: ${body.message}` : "";
        const failed = `Could not ${verb} schedule ${name} (HTTP ${response.status})${detail}.`;
        sayOfSchedules(failed, "error");
      }
    } catch {
      sayOfSchedules(`Could not ${verb} schedule ${name}: the server did not answer.`, "error");
    } finally {
      state.toggling.delete(name);
      button.disabled = false;
    }
  }

  // ---- start

  setText($("chart-window"), `(each point covers the ${RATE_S} s before it)`);
  $("chart").setAttribute(
    "aria-label",
    `Jobs ended per second and failure rate over the last five minutes, each point over the ${RATE_S} seconds before it`,
  );
  const tokenInput = $("token");
  $("token-field").addEventListener("submit", (event) => event.preventDefault()); // Enter: stay
  try {
    tokenInput.value = sessionStorage.getItem(TOKEN_KEY) ?? "";
    tokenInput.addEventListener("input", () => sessionStorage.setItem(TOKEN_KEY, tokenInput.value));
  } catch {
    // no sessionStorage (disabled by the browser): the token lasts as long as the page
  }
  // The first round's answers are in the page when the server put them there; else (the page
  // served from elsewhere) the first round runs at once.
  let first = null;
  try {
    first = JSON.parse($("first-round")?.textContent || "null");
  } catch {
    // not JSON: the page was not served by the app; the first round runs at once
  }
  if (first === null) {
    round();
  } else {
    state.info = first.info;
    showInfo(first.info);
    const [scheduled, schedules] = [first.scheduled ?? [], first.schedules ?? []];
    show(first.stats, first.jobs, scheduled, schedules, first.limits ?? null);
    setTimeout(tick, POLL_MS);
  }
})();

// The BiMER page: upload or record speech, show the transcript and the emotion;
// for a long recording, the emotion timeline: a chart (inline SVG drawn here from
// the JSON) and a table of segments, each playable in the page's audio player.
// Plain JavaScript, no libraries. Text from the server or the user is only ever
// put into the page with textContent / value, never parsed as HTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const state = {
    model: null,
    audio: null, // the last clip sent (File or Blob), kept for "predict again"
    recorder: null,
    stream: null,
    chunks: [],
    recordStart: 0,
    timer: null,
    busy: false,
    duration: null, // the clip's length in seconds, when the browser knows it
    timeline: null, // the timeline shown: { labels, colours, segments, summary }
    stopAt: null, // the end of the segment being played
    ownSeek: false, // the page, not the listener, moved the player
  };
  const SVG_NS = "http://www.w3.org/2000/svg";

  function setText(id, text) {
    $(id).textContent = text;
  }

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = false;
    setText("status", "The request was not processed.");
  }

  function clearError() {
    $("error").hidden = true;
    $("error").textContent = "";
  }

  function setBusy(busy, message) {
    state.busy = busy;
    document.body.classList.toggle("busy", busy);
    if (message) setText("status", message);
    updateButtons();
  }

  function updateButtons() {
    const model = state.model;
    const recording = state.recorder !== null;
    $("upload-button").disabled = state.busy || recording || $("file-input").files.length === 0;
    $("record-button").disabled = state.busy || recording;
    $("stop-button").disabled = !recording;
    const textOnly = model && model.kind === "text";
    $("repredict-button").disabled =
      state.busy || recording || (textOnly ? $("transcript").value.trim() === "" : state.audio === null);
  }

  function describeModel(info) {
    const kinds = { bimodal: "speech + text", speech: "speech only", text: "text only" };
    const asr = info.asr ? "speech recognition: " + info.asr : "no speech recognition (type the transcript)";
    setText(
      "model-summary",
      "Model: " + (info.model_type || "exported model") + " (" + (kinds[info.kind] || info.kind) + "), " +
        "classes: " + info.labels.join(", ") + "; " + asr + "."
    );
    describeLongAudio(info);
    if (info.kind === "text") {
      $("audio-section").hidden = true;
      setText("text-heading", "1. Text");
      setText("text-hint", "Type a sentence; this text-only model reads no audio.");
      setText("repredict-button", "Predict");
    } else {
      $("audio-section").hidden = false;
      if (info.kind === "speech") {
        setText("text-hint", "What was said, for reference: this speech-only model predicts from the audio alone.");
        $("repredict-button").hidden = true;
      } else if (!info.asr) {
        setText("text-hint", "This server has no speech recognition: type the words spoken, then upload or record.");
      }
    }
  }

  function describeLongAudio(info) {
    const timeline = info.timeline || {};
    const maxS = info.limits ? info.limits.max_duration_s : null;
    const longS = timeline.long_audio_s;
    const defaults = { asr: "sentences", vad: "pauses", fixed: "fixed windows" };
    $("segment-select").options[0].textContent = "the default (" + (defaults[timeline.default_segment] || "auto") + ")";
    if (!timeline.available || !longS) {
      $("segment-row").hidden = true;
      setText("long-hint", longS && timeline.reason ? "Clips longer than " + longS + " s are judged by their first " +
        longS + " s: " + timeline.reason + "." : "");
      return;
    }
    if (!info.asr) $("segment-select").querySelector('option[value="asr"]').disabled = true;
    setText(
      "long-hint",
      "Clips up to " + longS + " s (what the model hears at once) get one label; longer recordings" +
        (maxS ? ", up to " + clock(maxS) + "," : "") + " get an emotion timeline."
    );
  }

  async function loadModel() {
    try {
      const reply = await fetch("/api/model");
      if (!reply.ok) throw new Error("HTTP " + reply.status);
      state.model = await reply.json();
      describeModel(state.model);
    } catch (error) {
      showError("Cannot read the model description from the server (" + error.message + "). Reload the page.");
    }
    updateButtons();
  }

  function formatMs(value) {
    return value === null || value === undefined ? null : Math.round(value) + " ms";
  }

  function clock(seconds, decimals) {
    const d = decimals || 0;
    const total = Math.max(0, seconds);
    const hours = Math.floor(total / 3600);
    const minutes = Math.floor((total % 3600) / 60);
    let secs = (total % 60).toFixed(d);
    if (parseFloat(secs) >= 60) secs = (59.999).toFixed(d); // rounding never shows :60
    const padded = (parseFloat(secs) < 10 ? "0" : "") + secs;
    return hours ? hours + ":" + String(minutes).padStart(2, "0") + ":" + padded : minutes + ":" + padded;
  }

  function percent(p) {
    return (100 * p).toFixed(p >= 0.995 || p < 0.1 ? 1 : 0) + "\u00a0%"; // never "22" and "%" on two lines
  }

  function showSingle(single) {
    $("result").hidden = !single;
    $("timeline").hidden = single;
    if (single) {
      state.timeline = null;
      state.stopAt = null;
    }
    // The timeline transcribes each segment itself: no transcript box to edit.
    if (!(state.model && state.model.kind === "text")) {
      $("text-section").hidden = !single;
      setText("result-heading", single ? "3. Emotion" : "2. Emotion over time");
    }
  }

  function showResult(result) {
    if (result.timeline) {
      showTimeline(result.timeline, result);
      return;
    }
    showSingle(true);
    setText("label", result.label);
    const bars = $("bars");
    bars.replaceChildren();
    for (const [name, probability] of Object.entries(result.probabilities)) {
      const row = document.createElement("div");
      row.className = "bar-row" + (name === result.label ? " top" : "");
      row.dataset.label = name;
      const label = document.createElement("span");
      label.className = "bar-name";
      label.textContent = name;
      const track = document.createElement("div");
      track.className = "bar-track";
      const fill = document.createElement("div");
      fill.className = "bar-fill";
      fill.style.width = (100 * probability).toFixed(1) + "%";
      track.appendChild(fill);
      const value = document.createElement("span");
      value.className = "bar-value";
      value.textContent = (100 * probability).toFixed(1) + " %";
      row.append(label, track, value);
      bars.appendChild(row);
    }
    if (result.transcript !== null && result.transcript !== undefined) {
      $("transcript").value = result.transcript;
    }
    const t = result.timings_ms || {};
    const parts = [
      ["speech recognition", formatMs(t.asr)],
      ["model", formatMs(t.model)],
      ["audio conversion", formatMs(t.decode)],
      ["total", formatMs(t.total)],
    ].filter(([, v]) => v !== null);
    setText("timings", "Time: " + parts.map(([k, v]) => k + " " + v).join(" · "));
    const notes = $("notes");
    notes.replaceChildren();
    for (const note of result.notes || []) {
      const item = document.createElement("li");
      item.textContent = note;
      notes.appendChild(item);
    }
    $("result").hidden = false;
    setText("status", result.transcript_source === "asr" ? "Transcribed and predicted." : "Predicted.");
  }

  // --- the emotion timeline -----------------------------------------------

  function svg(tag, attributes, parent) {
    const element = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attributes || {})) element.setAttribute(name, String(value));
    if (parent) parent.appendChild(element);
    return element;
  }

  function tickStep(duration) {
    for (const step of [1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1800, 3600]) {
      if (duration / step <= 10) return step;
    }
    return 7200;
  }

  function segmentTitle(segment, labels) {
    const probabilities = labels.map((l) => l + " " + percent(segment.probabilities[l])).join(", ");
    return clock(segment.start_s, 1) + "–" + clock(segment.end_s, 1) + ": " + segment.label + " (" + probabilities + ")";
  }

  // Two panels on one time axis, as the library's timeline.png: a strip of segments in
  // their label's colour, and each segment's probabilities stacked to 1; dropped stretches hatched.
  function drawChart(timeline, duration) {
    const labels = timeline.labels;
    const colours = timeline.colours;
    const W = 720;
    const left = 38;
    const right = 10;
    const stripTop = 6;
    const stripH = 24;
    const top = stripTop + stripH + 10;
    const panelH = 140;
    const axisY = top + panelH;
    const H = axisY + 22;
    const x = (t) => left + ((W - left - right) * Math.min(Math.max(t, 0), duration)) / duration;
    const root = svg("svg", {
      viewBox: "0 0 " + W + " " + H,
      width: "100%",
      role: "img",
      "aria-label": "Emotion timeline: " + timeline.segments.length + " segments over " + clock(duration),
    });
    const defs = svg("defs", {}, root);
    const hatch = svg("pattern", { id: "hatch", patternUnits: "userSpaceOnUse", width: 6, height: 6, patternTransform: "rotate(45)" }, defs);
    svg("line", { x1: 0, y1: 0, x2: 0, y2: 6, class: "hatch-line" }, hatch);
    svg("rect", { x: left, y: top, width: W - left - right, height: panelH, class: "panel" }, root);
    for (const level of [0, 0.25, 0.5, 0.75, 1]) {
      const y = axisY - level * panelH;
      svg("line", { x1: left, x2: W - right, y1: y, y2: y, class: "grid" }, root);
      if (level % 0.5 === 0) svg("text", { x: left - 5, y: y + 4, class: "tick-label end" }, root).textContent = 100 * level + "%";
    }
    for (const skipped of timeline.summary.dropped || []) {
      svg("rect", { x: x(skipped.start_s), y: top, width: Math.max(1, x(skipped.end_s) - x(skipped.start_s)), height: panelH, fill: "url(#hatch)" }, root)
        .appendChild(svg("title")).textContent = "dropped " + clock(skipped.start_s, 1) + "–" + clock(skipped.end_s, 1) + ": " + skipped.reason;
    }
    timeline.segments.forEach((segment, index) => {
      const group = svg("g", { class: "segment", "data-index": index }, root);
      svg("title", {}, group).textContent = segmentTitle(segment, labels);
      const x0 = x(segment.start_s);
      const width = Math.max(1.5, x(segment.end_s) - x0);
      svg("rect", { x: x0, y: stripTop, width: width, height: stripH, fill: colours[segment.label], class: "strip" }, group);
      if (width > 7 * segment.label.length + 6) {
        svg("text", { x: x0 + width / 2, y: stripTop + stripH / 2 + 4, class: "strip-label" }, group).textContent = segment.label;
      }
      let y = axisY;
      for (const label of labels) {
        const h = panelH * segment.probabilities[label];
        y -= h;
        svg("rect", { x: x0, y: y, width: width, height: h, fill: colours[label] }, group);
      }
      svg("rect", { x: x0, y: stripTop, width: width, height: axisY - stripTop, class: "hit" }, group);
      group.addEventListener("click", () => playSegment(index));
    });
    const step = tickStep(duration);
    for (let t = 0; t <= duration + 1e-6; t += step) {
      svg("line", { x1: x(t), x2: x(t), y1: axisY, y2: axisY + 4, class: "axis" }, root);
      svg("text", { x: x(t), y: axisY + 16, class: "tick-label middle" }, root).textContent = clock(t);
    }
    svg("line", { x1: left, x2: W - right, y1: axisY, y2: axisY, class: "axis" }, root);
    svg("line", { id: "playhead", x1: left, x2: left, y1: stripTop - 3, y2: axisY, class: "playhead", visibility: "hidden" }, root);
    state.chartX = x;
    $("chart").replaceChildren(root);
  }

  function probabilityCell(segment, labels, colours) {
    const cell = document.createElement("td");
    const bar = document.createElement("div");
    bar.className = "mini-bar";
    bar.title = labels.map((l) => l + " " + percent(segment.probabilities[l])).join(", ");
    bar.setAttribute("role", "img");
    bar.setAttribute("aria-label", bar.title);
    for (const label of labels) {
      const part = document.createElement("span");
      part.style.width = (100 * segment.probabilities[label]).toFixed(2) + "%";
      part.style.background = colours[label];
      bar.appendChild(part);
    }
    const ranked = labels.slice().sort((a, b) => segment.probabilities[b] - segment.probabilities[a]);
    const text = document.createElement("div");
    text.className = "mini-text";
    text.textContent = ranked.slice(0, 2).map((l) => l + " " + percent(segment.probabilities[l])).join(" · ");
    cell.append(bar, text);
    return cell;
  }

  function swatch(colour) {
    const dot = document.createElement("span");
    dot.className = "swatch";
    dot.style.background = colour;
    return dot;
  }

  function showTimeline(timeline, reply) {
    showSingle(false);
    state.timeline = timeline;
    const summary = timeline.summary;
    const duration = (reply.audio && reply.audio.duration_s) || summary.duration_s;
    setText("dominant", summary.dominant || "no segment scored");
    setText(
      "timeline-summary",
      summary.segment_count + " segment" + (summary.segment_count === 1 ? "" : "s") + ", " + clock(summary.speech_s) +
        " of speech in " + clock(duration) + " (cut at " + { asr: "sentences", vad: "pauses", fixed: "fixed windows" }[summary.segmentation.mode] +
        "). " + (summary.merged.length ? summary.merged.length + " short segment(s) merged into a neighbour. " : "")
    );
    const shares = $("shares");
    shares.replaceChildren();
    for (const label of timeline.labels) {
      const item = document.createElement("li");
      item.dataset.label = label;
      const share = summary.emotions[label];
      item.append(swatch(timeline.colours[label]), document.createTextNode(label + " " + percent(share.share) + " (" + clock(share.seconds) + ")"));
      shares.appendChild(item);
    }
    drawChart(timeline, duration);
    const body = $("segments").tBodies[0];
    body.replaceChildren();
    timeline.segments.forEach((segment, index) => {
      const row = document.createElement("tr");
      row.dataset.index = index;
      row.dataset.start = segment.start_s;
      row.dataset.end = segment.end_s;
      row.dataset.label = segment.label;
      row.tabIndex = 0;
      row.title = "Play " + clock(segment.start_s, 1) + "–" + clock(segment.end_s, 1);
      const number = document.createElement("td");
      number.textContent = index + 1;
      const time = document.createElement("td");
      time.className = "time";
      time.textContent = clock(segment.start_s, 1) + "–" + clock(segment.end_s, 1);
      const words = document.createElement("td");
      words.className = "words";
      words.textContent = segment.transcript || "—";
      const emotion = document.createElement("td");
      emotion.className = "emotion";
      emotion.append(swatch(timeline.colours[segment.label]), document.createTextNode(segment.label + " " + percent(segment.probabilities[segment.label])));
      row.append(number, time, words, emotion, probabilityCell(segment, timeline.labels, timeline.colours));
      row.addEventListener("click", () => playSegment(index));
      row.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          playSegment(index);
        }
      });
      body.appendChild(row);
    });
    const skipped = (summary.dropped || []).length;
    $("skipped").hidden = skipped === 0;
    setText("skipped-summary", skipped + " stretch" + (skipped === 1 ? "" : "es") + " left out (hatched in the chart)");
    const list = $("skipped-list");
    list.replaceChildren();
    for (const item of summary.dropped || []) {
      const entry = document.createElement("li");
      entry.textContent = clock(item.start_s, 1) + "–" + clock(item.end_s, 1) + ": " + item.reason;
      list.appendChild(entry);
    }
    const t = reply.timings_ms || {};
    const parts = [
      ["voice activity", formatMs(t.vad)],
      ["speech recognition", formatMs(t.asr)],
      ["model", formatMs(t.model)],
      ["audio conversion", formatMs(t.decode)],
      ["total", formatMs(t.total)],
    ].filter(([, v]) => v !== null);
    setText("timeline-timings", "Time: " + parts.map(([k, v]) => k + " " + v).join(" · "));
    const notes = $("timeline-notes");
    notes.replaceChildren();
    for (const note of (reply.notes || []).slice(reply.timeline ? 1 : 0)) {
      const item = document.createElement("li");
      item.textContent = note;
      notes.appendChild(item);
    }
    setText("status", "Timeline: " + summary.segment_count + " segment" + (summary.segment_count === 1 ? "" : "s") + ".");
  }

  function markPlaying(index) {
    for (const row of $("segments").tBodies[0].rows) row.classList.toggle("playing", Number(row.dataset.index) === index);
    for (const group of $("chart").querySelectorAll("g.segment")) {
      group.classList.toggle("playing", Number(group.getAttribute("data-index")) === index);
    }
  }

  function playSegment(index) {
    const segment = state.timeline && state.timeline.segments[index];
    const player = $("playback");
    if (!segment || !player.src) return;
    state.stopAt = segment.end_s;
    state.ownSeek = true;
    player.currentTime = segment.start_s;
    const playing = player.play();
    if (playing && playing.catch) playing.catch(() => {}); // a refused play still leaves the position there
    markPlaying(index);
  }

  function onPlayerTime() {
    const player = $("playback");
    if (state.stopAt !== null && player.currentTime >= state.stopAt) {
      player.pause();
      state.stopAt = null;
    }
    const head = document.getElementById("playhead");
    if (head && state.chartX && state.timeline) {
      const x = state.chartX(player.currentTime);
      head.setAttribute("x1", x);
      head.setAttribute("x2", x);
      head.setAttribute("visibility", player.currentTime > 0 ? "visible" : "hidden");
      const index = state.timeline.segments.findIndex((s) => s.start_s <= player.currentTime && player.currentTime < s.end_s);
      if (index >= 0 && !player.paused) markPlaying(index);
    }
  }

  function onPlayerSeeking() {
    if (!state.ownSeek) state.stopAt = null; // the listener moved it: play on from there
    state.ownSeek = false;
  }

  function onPlayerMetadata() {
    const seconds = $("playback").duration;
    state.duration = Number.isFinite(seconds) ? seconds : state.duration;
    if (state.busy) setText("status", busyMessage(state.lastRequest));
  }

  function isLong() {
    const timeline = state.model && state.model.timeline;
    return Boolean(timeline && timeline.available && timeline.long_audio_s && state.duration && state.duration > timeline.long_audio_s);
  }

  function busyMessage(request) {
    if (!request) return "Predicting…";
    if (request.audio && !request.text && isLong()) {
      return "Cutting the " + clock(state.duration) + " recording into segments, transcribing and predicting… (about a minute or more per 10 minutes of audio)";
    }
    return request.transcribing ? "Transcribing and predicting…" : "Predicting…";
  }

  async function send(audio, text) {
    clearError();
    const form = new FormData();
    if (audio) form.append("audio", audio, audio.name || "recording");
    if (text && text.trim()) form.append("text", text);
    const segment = $("segment-select").value;
    if (audio && segment) form.append("segment", segment);
    const transcribing = audio && !(text && text.trim()) && state.model && state.model.asr;
    state.lastRequest = { audio: Boolean(audio), text: Boolean(text && text.trim()), transcribing: Boolean(transcribing) };
    setBusy(true, busyMessage(state.lastRequest));
    try {
      const reply = await fetch("/api/predict", { method: "POST", body: form });
      const type = reply.headers.get("Content-Type") || "";
      const body = type.includes("application/json") ? await reply.json() : null;
      if (!reply.ok) {
        showError((body && body.error) || "The server answered HTTP " + reply.status + " " + reply.statusText + ".");
      } else {
        showResult(body);
      }
    } catch (error) {
      showError("The server did not answer (" + error.message + "). Is it still running?");
    } finally {
      setBusy(false);
    }
  }

  function setClip(clip, seconds) {
    state.audio = clip;
    state.duration = seconds;
    state.stopAt = null;
    if ($("playback").src) URL.revokeObjectURL($("playback").src);
    $("playback").src = URL.createObjectURL(clip);
  }

  function onUpload() {
    const file = $("file-input").files[0];
    if (!file) return;
    setClip(file, null);
    $("playback").hidden = false;
    send(file, null);
  }

  function recordingType() {
    const types = ["audio/webm;codecs=opus", "audio/webm", "audio/ogg;codecs=opus", "audio/mp4"];
    return types.find((t) => window.MediaRecorder && MediaRecorder.isTypeSupported(t)) || "";
  }

  async function startRecording() {
    clearError();
    if (!navigator.mediaDevices || !window.MediaRecorder) {
      showError("This browser cannot record here: recording needs a secure page (https, or http://127.0.0.1 / localhost). Upload a file instead.");
      return;
    }
    try {
      state.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (error) {
      showError("No microphone access (" + error.name + "): allow the microphone for this page, or upload a file.");
      return;
    }
    const type = recordingType();
    state.chunks = [];
    state.recorder = new MediaRecorder(state.stream, type ? { mimeType: type } : undefined);
    state.recorder.ondataavailable = (event) => {
      if (event.data && event.data.size > 0) state.chunks.push(event.data);
    };
    state.recorder.onstop = onRecordingStopped;
    state.recorder.start();
    state.recordStart = performance.now();
    const limit = (state.model && state.model.limits && state.model.limits.max_duration_s) || 60;
    $("recording-state").classList.add("on");
    state.timer = setInterval(() => {
      const seconds = (performance.now() - state.recordStart) / 1000;
      setText("recording-state", "Recording… " + seconds.toFixed(1) + " s");
      if (seconds >= limit - 0.5) stopRecording();
    }, 100);
    setText("recording-state", "Recording… 0.0 s");
    updateButtons();
  }

  function stopRecording() {
    if (state.recorder && state.recorder.state !== "inactive") state.recorder.stop();
  }

  function onRecordingStopped() {
    clearInterval(state.timer);
    const seconds = (performance.now() - state.recordStart) / 1000;
    const type = state.recorder.mimeType || "audio/webm";
    for (const track of state.stream.getTracks()) track.stop();
    state.recorder = null;
    state.stream = null;
    $("recording-state").classList.remove("on");
    setText("recording-state", "Recorded " + seconds.toFixed(1) + " s");
    const extension = type.includes("ogg") ? "ogg" : type.includes("mp4") ? "m4a" : "webm";
    const blob = new Blob(state.chunks, { type: type });
    const clip = new File([blob], "recording." + extension, { type: type });
    setClip(clip, seconds);
    $("playback").hidden = false;
    send(clip, null);
  }

  function onRepredict() {
    const text = $("transcript").value;
    if (state.model && state.model.kind === "text") {
      send(null, text);
    } else if (state.audio) {
      send(state.audio, text);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("file-input").addEventListener("change", updateButtons);
    $("upload-button").addEventListener("click", onUpload);
    $("record-button").addEventListener("click", startRecording);
    $("stop-button").addEventListener("click", stopRecording);
    $("repredict-button").addEventListener("click", onRepredict);
    $("transcript").addEventListener("input", updateButtons);
    $("playback").addEventListener("timeupdate", onPlayerTime);
    $("playback").addEventListener("seeking", onPlayerSeeking);
    $("playback").addEventListener("loadedmetadata", onPlayerMetadata);
    loadModel();
  });
})();

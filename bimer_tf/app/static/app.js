// The BiMER page: upload or record speech, show the transcript and the emotion.
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
  };

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

  function showResult(result) {
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

  async function send(audio, text) {
    clearError();
    const form = new FormData();
    if (audio) form.append("audio", audio, audio.name || "recording");
    if (text && text.trim()) form.append("text", text);
    const transcribing = audio && !(text && text.trim()) && state.model && state.model.asr;
    setBusy(true, transcribing ? "Transcribing and predicting…" : "Predicting…");
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

  function onUpload() {
    const file = $("file-input").files[0];
    if (!file) return;
    state.audio = file;
    $("playback").src = URL.createObjectURL(file);
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
    state.audio = clip;
    $("playback").src = URL.createObjectURL(clip);
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
    loadModel();
  });
})();

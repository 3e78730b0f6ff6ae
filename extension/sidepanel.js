// Hearth's side panel: chat UI, history in chrome.storage, load progress, summaries from the context menu.
// It only renders and stores; requests go to the engine through the service worker as {kind, id, content}.
import { marked } from "./vendor/marked.esm.js";
import DOMPurify from "./vendor/purify.es.mjs";
import { ENGINE_DEFAULTS, engineSettings } from "./engine_settings.js";
import { DEFAULTS as SHARED, ErrorType, Kind } from "./protocol.js";

const $ = (id) => document.getElementById(id);
const { temperature, top_p, top_k, max_tokens } = SHARED.sampling; // the engine's own defaults
const DEFAULTS = { system: "You are a helpful assistant.", temperature, top_p, top_k, max_tokens, seed: null };
const STAGES = { start: "Starting the engine", pyodide: "Starting Python (Pyodide)", packages: "Installing packages",
                 download: "Reading the model", gpu: "Opening WebGPU", weights: "Uploading weights to the GPU" };
const openedAt = performance.now();

const state = {
  conversations: {}, // id -> {id, title, updated, messages: [{role, content, stats?, error?, request?}]}
  currentId: null,
  settings: { ...DEFAULTS },
  active: null, // the request being streamed: {id, message, element, text, frame}
  pairing: null, // the id of a pairing attempt awaiting its answer
};

// ---------------------------------------------------------------- messages to and from the engine

function send(kind, id = null, content = null) {
  chrome.runtime.sendMessage({ target: "worker", kind, id, content }).catch(showFatal);
}

chrome.runtime.onMessage.addListener((message) => {
  if (message?.target !== "panel") return false;
  const { kind, id, content } = message;
  if (id === null) onLoadMessage(kind, content);
  else if (state.pairing === id) onPairMessage(kind, content);
  else if (state.active?.id === id) onRequestMessage(kind, content);
  return false;
});

function onLoadMessage(kind, content) {
  if (kind === Kind.PROGRESS) {
    const label = STAGES[content.stage] ?? content.stage;
    const mb = content.stage === "download" || content.stage === "weights";
    $("load-label").textContent = mb && content.total > 1
      ? `${label}… ${(content.done / 2 ** 20).toFixed(0)} / ${(content.total / 2 ** 20).toFixed(0)} MiB` : `${label}…`;
    $("load-bar").value = content.total ? content.done / content.total : 0;
    if (document.body.dataset.state !== "ready") document.body.dataset.state = "loading";
  } else if (kind === Kind.READY) {
    const seconds = ((performance.now() - openedAt) / 1000).toFixed(1);
    document.body.dataset.readyMs = String(Math.round(performance.now() - openedAt));
    $("load").hidden = true;
    $("prompt").placeholder = `Ask ${content.model} anything… (Enter to send, Shift+Enter for a new line)`;
    const waited = seconds >= 0.5 ? ` in ${seconds} s` : ""; // (already loaded when this panel opened)
    const together = content.seats > 1 ? ` · ${content.seats} requests at once` : "";
    const prompts = content.tensor_cores ? "f16 prompts on tensor cores" : "f16 prompts";
    const f16 = [content.kv_f16 && "f16 context", content.f16_prompts && prompts, content.q8_prompts && "8-bit prompts"]
      .filter(Boolean);
    const precision = f16.map((what) => ` · ${what}`).join("");
    $("speed").textContent = `Model ready${waited} · ${content.adapter} · ${content.n_ctx}-token context${together}${precision}`;
    if (!state.active) document.body.dataset.state = "ready";
  } else if (kind === Kind.ERROR) {
    $("load").hidden = true;
    document.body.dataset.state = "error";
    showAlert(explain(content, true));
  }
}

function onRequestMessage(kind, content) {
  const active = state.active;
  if (kind === Kind.CHUNK) {
    active.text += content.text;
    active.frame ??= requestAnimationFrame(() => {
      active.frame = null;
      renderMarkdown(active.element.querySelector(".body"), active.text);
      scrollDown();
    });
  } else if (kind === Kind.PART) {
    active.element.querySelector(".note").textContent = `Summarising part ${content.part} of ${content.parts}…`;
  } else if (kind === Kind.DONE) {
    finish({ stats: content });
  } else if (kind === Kind.ERROR) {
    finish({ error: explain(content, false) });
  }
}

// ---------------------------------------------------------------- requests

function startRequest(kind, content, conversation) {
  const message = { role: "assistant", content: "" };
  conversation.messages.push(message);
  const element = renderMessage(message);
  element.classList.add("streaming");
  state.active = { id: crypto.randomUUID(), message, element, text: "", conversation, frame: null };
  document.body.dataset.state = "generating";
  $("stop").hidden = false;
  $("send").disabled = true;
  $("regenerate").disabled = true;
  send(kind, state.active.id, content);
}

function finish({ stats, error }) {
  const { message, element, text, conversation, frame } = state.active;
  if (frame) cancelAnimationFrame(frame);
  state.active = null;
  message.content = text;
  element.classList.remove("streaming");
  renderMarkdown(element.querySelector(".body"), text);
  const note = element.querySelector(".note");
  if (error) {
    message.error = error;
    note.textContent = error;
    note.classList.add("error");
  } else {
    message.stats = stats;
    note.textContent = describeStats(stats);
    $("speed").textContent = stats.tokens_per_s ? `${stats.tokens_per_s.toFixed(1)} tok/s` : "";
  }
  $("stop").hidden = true;
  $("send").disabled = false;
  $("regenerate").disabled = false;
  document.body.dataset.state = "ready";
  conversation.updated = Date.now();
  save();
}

function describeStats(stats) {
  const parts = [`${stats.n_tokens} tokens in ${stats.seconds.toFixed(1)} s`];
  if (stats.tokens_per_s) parts.push(`${stats.tokens_per_s.toFixed(1)} tok/s`);
  if (stats.parts > 1) parts.push(`summarised in ${stats.parts} parts`);
  if (stats.finish_reason === "stop" && stats.stopped) parts.push("stopped");
  if (stats.finish_reason === "length") parts.push("cut at max tokens");
  return parts.join(" · ");
}

function options() {
  const s = state.settings;
  return { temperature: num(s.temperature), top_p: num(s.top_p), top_k: num(s.top_k),
           max_tokens: num(s.max_tokens), seed: s.seed === null || s.seed === "" ? null : num(s.seed) };
}

function chatMessages(conversation) {
  const history = conversation.messages
    .filter((m) => !m.error && m.content && (m.role === "user" || m.role === "assistant"))
    .map(({ role, content }) => ({ role, content }));
  const system = state.settings.system?.trim();
  return system ? [{ role: "system", content: system }, ...history] : history;
}

function ask(text) {
  const conversation = current();
  conversation.messages.push({ role: "user", content: text });
  if (!conversation.title) conversation.title = text.slice(0, 60);
  renderMessage(conversation.messages.at(-1));
  startRequest(Kind.CHAT, { messages: chatMessages(conversation), options: options() }, conversation);
}

function regenerate() {
  const conversation = current();
  while (conversation.messages.length && conversation.messages.at(-1).role === "assistant") {
    conversation.messages.pop();
  }
  const last = conversation.messages.at(-1);
  if (!last) return;
  renderConversation();
  if (last.request) startRequest(Kind.SUMMARIZE, { ...last.request, options: options() }, conversation);
  else startRequest(Kind.CHAT, { messages: chatMessages(conversation), options: options() }, conversation);
}

function summarize(pending) {
  const conversation = newConversation(`Summary: ${pending.title || pending.url}`);
  const what = pending.source === "selection" ? "the selection on" : "the page";
  const request = { text: pending.text, title: pending.title };
  conversation.messages.push({ role: "user", content: `Summarize ${what} “${pending.title || pending.url}”`, request });
  renderConversation();
  startRequest(Kind.SUMMARIZE, { ...request, options: options() }, conversation);
}

async function takePendingSummary() {
  const { pendingSummary } = await chrome.storage.session.get("pendingSummary");
  if (!pendingSummary || state.active) return;
  await chrome.storage.session.remove("pendingSummary");
  summarize(pendingSummary);
}

// ---------------------------------------------------------------- rendering (model output is untrusted)

const escapeHtml = (text) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
marked.use({
  gfm: true,
  renderer: {
    html: ({ text }) => escapeHtml(text), // raw HTML in an answer is shown as text, never parsed
    image: ({ text }) => escapeHtml(text), // images would make requests: show their alt text
  },
});
const PURIFY = { RETURN_DOM_FRAGMENT: true, FORBID_TAGS: ["img", "style", "form", "input", "iframe", "svg", "math",
                 "video", "audio", "source", "picture", "object", "embed"], FORBID_ATTR: ["style", "srcset"] };

function renderMarkdown(element, text) {
  element.replaceChildren(DOMPurify.sanitize(marked.parse(text, { async: false }), PURIFY));
  for (const link of element.querySelectorAll("a")) {
    link.target = "_blank";
    link.rel = "noopener noreferrer";
  }
}

function renderMessage(message) {
  const element = document.createElement("article");
  element.className = `message ${message.role}`;
  const body = document.createElement("div");
  body.className = "body";
  const note = document.createElement("div");
  note.className = "note";
  if (message.role === "assistant") renderMarkdown(body, message.content);
  else body.textContent = message.content;
  if (message.error) {
    note.textContent = message.error;
    note.classList.add("error");
  } else if (message.stats) note.textContent = describeStats(message.stats);
  element.append(body, note);
  $("messages").append(element);
  scrollDown();
  return element;
}

function renderConversation() {
  $("messages").replaceChildren();
  current().messages.forEach(renderMessage);
  renderHistory();
}

function renderHistory() {
  const select = $("history");
  const items = Object.values(state.conversations).sort((a, b) => b.updated - a.updated);
  select.replaceChildren(...items.map((c) => new Option(c.title || "New chat", c.id, false, c.id === state.currentId)));
}

const scrollDown = () => $("messages").lastElementChild?.scrollIntoView({ block: "end" });

function explain(error, loading) {
  if (error.type === ErrorType.GpuUnavailable) {
    return "WebGPU unavailable: Hearth runs the model on your GPU through WebGPU, and this browser offers none. "
      + "Use a recent Chrome or Chromium with WebGPU enabled (see chrome://gpu).";
  }
  if (error.type === ErrorType.ContextTooLong) {
    return "Context too long: this conversation no longer fits the model's context. Start a new chat, or ask "
      + "something shorter.";
  }
  return loading ? `Model failed to load: ${error.message}` : `Error: ${error.message}`;
}

function showAlert(text) {
  $("alert").textContent = text;
  $("alert").hidden = false;
}

function showFatal(error) {
  showAlert(`The extension could not reach its engine: ${error?.message ?? error}`);
}

// ---------------------------------------------------------------- storage (survives restarts)

function current() {
  return state.conversations[state.currentId] ?? newConversation();
}

function newConversation(title = "") {
  const conversation = { id: crypto.randomUUID(), title, updated: Date.now(), messages: [] };
  state.conversations[conversation.id] = conversation;
  state.currentId = conversation.id;
  return conversation;
}

function save() {
  const { conversations, currentId, settings } = state;
  return chrome.storage.local.set({ conversations, currentId, settings });
}

async function restore() {
  const stored = await chrome.storage.local.get(["conversations", "currentId", "settings"]);
  state.conversations = stored.conversations ?? {};
  state.settings = { ...DEFAULTS, ...(stored.settings ?? {}) };
  state.currentId = stored.currentId in state.conversations ? stored.currentId : null;
  current();
  for (const key of Object.keys(DEFAULTS)) $(key).value = state.settings[key] ?? "";
  const engine = await engineSettings();
  for (const key of Object.keys(ENGINE_DEFAULTS)) {
    if ($(key).type === "checkbox") $(key).checked = engine[key];
    else $(key).value = engine[key];
  }
}

const num = (value) => (value === "" || value === null ? null : Number(value));

// The engine's own settings reach the offscreen document in its URL: a change starts a fresh one.
// A value out of its input's range keeps the one in use.
async function reloadEngine() {
  const before = await engineSettings();
  const engine = { ...before };
  for (const key of Object.keys(ENGINE_DEFAULTS)) {
    if ($(key).type === "checkbox") {
      engine[key] = $(key).checked;
      continue;
    }
    const value = Math.round(num($(key).value) ?? NaN);
    if (value >= Number($(key).min) && value <= Number($(key).max)) engine[key] = value;
    $(key).value = engine[key];
  }
  if (Object.keys(ENGINE_DEFAULTS).every((key) => engine[key] === before[key])) return;
  if (state.active) finish({ error: "Stopped: the model is reloading." });
  $("load").hidden = false;
  $("alert").hidden = true;
  $("speed").textContent = "";
  document.body.dataset.state = "loading";
  await chrome.storage.local.set({ engine });
  send(Kind.RELOAD);
}

// ---------------------------------------------------------------- pairing with the bridge

// Where the bridge's native-messaging host cannot give the extension its token, `python -m bridge` prints a
// one-time code. The engine's document presents it to the bridge, whose answer carries the token; it is kept
// here (chrome.storage.local "bridge_token") and the service worker hands it to the document from then on.
function pair() {
  const code = $("pairing_code").value.trim();
  if (!code) return showPairing("Type the pairing code that `python -m bridge` printed.", true);
  state.pairing = crypto.randomUUID();
  $("pair").disabled = true;
  showPairing("Pairing with the bridge…", false);
  send(Kind.PAIR, state.pairing, { code });
}

async function onPairMessage(kind, content) {
  state.pairing = null;
  $("pair").disabled = false;
  if (kind !== Kind.PAIR) return showPairing(`Pairing failed: ${content.message}`, true);
  await chrome.storage.local.set({ bridge_token: content.token });
  $("pairing_code").value = "";
  showPairing("Paired: the extension has the bridge's token and connects by itself from now on.", false);
}

function showPairing(text, failed) {
  $("pair-status").textContent = text;
  $("pair-status").classList.toggle("error", failed);
}

// ---------------------------------------------------------------- wiring

function wire() {
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("prompt").value.trim();
    if (!text || state.active) return;
    $("prompt").value = "";
    ask(text);
  });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => state.active && send(Kind.STOP, state.active.id));
  $("regenerate").addEventListener("click", () => !state.active && regenerate());
  $("new-chat").addEventListener("click", () => {
    if (state.active) return;
    newConversation();
    renderConversation();
    save();
  });
  $("history").addEventListener("change", (event) => {
    if (state.active) return renderHistory();
    state.currentId = event.target.value;
    renderConversation();
    save();
  });
  $("settings-toggle").addEventListener("click", () => {
    $("settings").hidden = !$("settings").hidden;
    $("settings-toggle").setAttribute("aria-expanded", String(!$("settings").hidden));
  });
  for (const key of Object.keys(DEFAULTS)) {
    $(key).addEventListener("change", () => {
      state.settings[key] = key === "system" ? $(key).value : num($(key).value);
      save();
    });
  }
  for (const key of Object.keys(ENGINE_DEFAULTS)) $(key).addEventListener("change", reloadEngine);
  $("pair").addEventListener("click", pair);
  $("pairing_code").addEventListener("keydown", (event) => event.key === "Enter" && pair());
  $("settings-reset").addEventListener("click", () => {
    state.settings = { ...DEFAULTS };
    for (const key of Object.keys(DEFAULTS)) $(key).value = state.settings[key] ?? "";
    save();
  });
  chrome.storage.session.onChanged.addListener((changes) => changes.pendingSummary?.newValue && takePendingSummary());
  // An answer nobody will see should not hold the queue.
  addEventListener("pagehide", () => state.active && send(Kind.STOP, state.active.id));
}

await restore();
wire();
renderConversation();
send(Kind.STATUS);
takePendingSummary();

// The retail web page: sign in, buy quota, place and stamp, download, history, verify.
// Plain JavaScript (an ES module) against the gateway's HTTP API; no framework, nothing from elsewhere.

import { TEXT } from "./texts.js";

const LANGUAGE_KEY = "emeterai.language";
const SESSION_KEY = "emeterai.session";
const STAMP_SIDE_PT = 100;
const NOTICE_REFRESH_MS = 30000;
const SIGNED_IN_VIEWS = new Set(["stamp", "buy", "history", "pin"]);
const VIEWS = new Set(["signin", "verify", "waiting", ...SIGNED_IN_VIEWS]);

const state = {
  language: localStorage.getItem(LANGUAGE_KEY) === "en" ? "en" : "id",
  config: { sandbox_payments: false, max_upload_bytes: 10 * 1024 * 1024 },
  view: null,
  message: null,
  notice: null,
  otp: null,
  balance: null,
  order: null,
  pendingOrder: null,
  file: null,
  preview: null,
  rect: null,
  pendingStamp: null,
  stampResult: null,
  stampAttempt: null,
  waiting: null,
  history: null,
  report: null,
  // The file the report is about, and its report in each language asked for so far.
  reportFile: null,
  reports: {},
  serial: null,
};

const $ = (id) => document.getElementById(id);

function t(key, vars = {}) {
  const text = TEXT[state.language][key] ?? TEXT.id[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ""));
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function locale() {
  return state.language === "id" ? "id-ID" : "en-GB";
}

function rupiah(amount) {
  return "Rp" + new Intl.NumberFormat(state.language === "id" ? "id-ID" : "en-US").format(amount);
}

function when(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString(locale(), { dateStyle: "medium", timeStyle: "short" });
}

// crypto.randomUUID needs a secure context; the fallback keeps a plain-HTTP test setup working.
function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

// ---- session and API -------------------------------------------------------------------

function session() {
  try {
    return JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
  } catch {
    return null;
  }
}

function saveSession(value) {
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(value));
}

function endSession() {
  sessionStorage.removeItem(SESSION_KEY);
  state.balance = null;
  state.history = null;
  state.order = null;
  renderSignedIn();
}

class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || "");
    this.status = status;
    this.problem = problem;
  }
}

async function problemOf(response) {
  const type = response.headers.get("content-type") || "";
  if (type.includes("json")) {
    try {
      const body = await response.json();
      if (body && typeof body === "object") return body;
    } catch {
      // Fall through to the generic words below.
    }
  }
  return { status: response.status, detail: t("httpError", { status: response.status }) };
}

let refreshing = null;

// One refresh at a time, however many calls saw their token expire together.
function refreshTokens() {
  if (!refreshing) {
    refreshing = (async () => {
      const current = session();
      if (!current || !current.refresh_token) return false;
      try {
        const response = await fetch("/v1/auth/refresh", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ refresh_token: current.refresh_token }),
        });
        if (!response.ok) return false;
        const tokens = await response.json();
        saveSession({ ...current, access_token: tokens.access_token, refresh_token: tokens.refresh_token });
        return true;
      } catch {
        return false;
      }
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

// The raw response, after one token refresh when a signed-in call gets 401. Throws ApiError
// only when the server could not be reached or the session is over.
async function send(method, path, { json, form, headers = {}, auth = false } = {}, retried = false) {
  // The server's problem details come in the page's language.
  const init = { method, headers: { "Accept-Language": state.language, ...headers } };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form) {
    init.body = form;
  }
  if (auth) {
    const current = session();
    if (!current) throw signedOutError();
    init.headers.Authorization = `Bearer ${current.access_token}`;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, { detail: t("networkError") });
  }
  if (auth && response.status === 401) {
    if (!retried && (await refreshTokens())) {
      return send(method, path, { json, form, headers, auth }, true);
    }
    throw signedOutError();
  }
  return response;
}

function signedOutError() {
  endSession();
  show("signin");
  return new ApiError(401, { detail: t("sessionExpired"), localKey: "sessionExpired" });
}

// The JSON body of a successful call (null for 204), or ApiError with the problem.
async function call(method, path, options = {}) {
  const response = await send(method, path, options);
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  if (response.status === 204) return null;
  return response.json();
}

// ---- messages ------------------------------------------------------------------------------

function problemText(problem) {
  if (problem.localKey) return t(problem.localKey);
  let text = problem.detail || problem.title || t("httpError", { status: problem.status || "?" });
  if (Array.isArray(problem.errors) && problem.errors.length) {
    text += ": " + problem.errors.map((e) => `${e.field}: ${e.problem}`).join("; ");
  }
  return text;
}

function showError(error) {
  const problem = error instanceof ApiError ? error.problem : { detail: t("httpError", { status: "?" }) };
  if (!(error instanceof ApiError)) console.error(error);
  state.message = { kind: "error", problem };
  renderMessage();
  // Something is down: an operator's notice may say what to do meanwhile (pay by SSP, say), so
  // look for one now rather than at the next half-minute.
  if (error instanceof ApiError && (error.status === 503 || error.status === 0)) loadNotice();
}

function showInfo(key, vars = {}) {
  state.message = { kind: "info", key, vars };
  renderMessage();
}

function clearMessage() {
  state.message = null;
  renderMessage();
}

function renderMessage() {
  const error = $("error");
  const info = $("info");
  const message = state.message;
  error.hidden = !message || message.kind !== "error";
  info.hidden = !message || message.kind !== "info";
  if (!message) return;
  if (message.kind === "error") error.textContent = problemText(message.problem);
  else info.textContent = t(message.key, message.vars);
}

// Runs `action`, showing its error; the form's buttons are disabled meanwhile.
async function busy(form, action) {
  const buttons = form ? form.querySelectorAll("button") : [];
  buttons.forEach((b) => (b.disabled = true));
  if (form) form.setAttribute("aria-busy", "true");
  try {
    return await action();
  } catch (error) {
    showError(error);
    return undefined;
  } finally {
    buttons.forEach((b) => (b.disabled = false));
    if (form) form.removeAttribute("aria-busy");
  }
}

// ---- views ---------------------------------------------------------------------------------

function show(view, { keepMessage = false } = {}) {
  if (!VIEWS.has(view) || (view === "waiting" && !state.waiting)) view = session() ? "stamp" : "signin";
  if (SIGNED_IN_VIEWS.has(view) && !session()) view = "signin";
  if (view === "signin" && session()) view = "stamp";
  if (state.waiting && view !== "waiting") stopWaiting();
  state.view = view;
  for (const section of document.querySelectorAll(".view")) {
    section.hidden = section.id !== `view-${view}`;
  }
  for (const tab of document.querySelectorAll("nav [data-view]")) {
    if (tab.dataset.view === view) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  if (!keepMessage) clearMessage();
  if (view !== "waiting" && location.hash !== `#${view}`) history.replaceState(null, "", `#${view}`);
  if (view === "buy" || view === "stamp") loadBalance();
  if (view === "history") loadHistory();
}

function renderSignedIn() {
  const signedIn = Boolean(session());
  for (const tab of document.querySelectorAll("nav [data-when]")) {
    tab.hidden = (tab.dataset.when === "signed-in") !== signedIn;
  }
  $("sign-out").hidden = !signedIn;
  renderBalance();
}

function applyLanguage() {
  document.documentElement.lang = state.language;
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll("[data-i18n-aria-label]")) {
    node.setAttribute("aria-label", t(node.dataset.i18nAriaLabel));
  }
  const switcher = $("language");
  switcher.textContent = t("otherLanguage");
  switcher.lang = t("otherLanguageCode");
  renderMessage();
  renderNotice();
  renderBalance();
  renderOtp();
  renderOrder();
  renderPreview();
  renderStampResult();
  renderWaiting();
  renderHistory();
  renderReport();
  renderSerial();
}

// ---- notice --------------------------------------------------------------------------------

async function loadNotice() {
  try {
    const body = await call("GET", "/v1/notice");
    state.notice = body.notice;
    renderNotice();
  } catch {
    // Keep showing the last notice: the board being away is no news to the user.
  }
}

function renderNotice() {
  const notice = state.notice;
  $("notice").hidden = !notice;
  $("notice-text").textContent = notice ? notice[state.language] || notice.id : "";
}

// ---- sign-in -------------------------------------------------------------------------------

function renderOtp() {
  $("otp-form").hidden = Boolean(state.otp);
  $("token-form").hidden = !state.otp;
  if (state.otp) {
    $("code-sent").textContent = t("codeSent", {
      phone: state.otp.phone,
      minutes: Math.max(1, Math.round(state.otp.expires_in / 60)),
    });
  }
}

async function requestCode(event) {
  event.preventDefault();
  const form = event.target;
  await busy(form, async () => {
    const phone = $("phone").value.trim();
    const sent = await call("POST", "/v1/auth/otp", { json: { phone } });
    state.otp = { phone: sent.phone, expires_in: sent.expires_in };
    clearMessage();
    renderOtp();
    $("code").focus();
  });
}

async function signIn(event) {
  event.preventDefault();
  await busy(event.target, async () => {
    const tokens = await call("POST", "/v1/auth/token", {
      json: { phone: state.otp.phone, code: $("code").value.trim() },
    });
    saveSession({ access_token: tokens.access_token, refresh_token: tokens.refresh_token, phone: state.otp.phone });
    state.otp = null;
    $("code").value = "";
    renderOtp();
    renderSignedIn();
    show("stamp");
    showInfo("signedIn");
  });
}

async function signOut() {
  const current = session();
  if (current) {
    try {
      await fetch("/v1/auth/logout", {
        method: "POST",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${current.access_token}` },
        body: JSON.stringify({ refresh_token: current.refresh_token }),
      });
    } catch {
      // Signed out here whatever the server says; the tokens are forgotten below.
    }
  }
  endSession();
  show("signin");
  showInfo("signedOut");
}

// ---- balance and orders --------------------------------------------------------------------

async function loadBalance() {
  if (!session()) return;
  try {
    state.balance = await call("GET", "/v1/balance", { auth: true });
    renderBalance();
  } catch (error) {
    showError(error);
  }
}

function renderBalance() {
  const node = $("balance");
  node.hidden = !session() || !state.balance;
  if (!node.hidden) node.textContent = t("balance", { available: state.balance.available });
}

async function createOrder(event) {
  event.preventDefault();
  await busy(event.target, async () => {
    const quantity = Number($("quantity").value);
    // The same key for a retry of the same purchase whose answer never came.
    if (!state.pendingOrder || state.pendingOrder.quantity !== quantity) {
      state.pendingOrder = { quantity, key: newKey() };
    }
    try {
      state.order = await call("POST", "/v1/orders", {
        json: { quantity },
        headers: { "Idempotency-Key": state.pendingOrder.key },
        auth: true,
      });
      state.pendingOrder = null;
    } catch (error) {
      if (!(error instanceof ApiError) || (error.status > 0 && error.status < 500)) state.pendingOrder = null;
      throw error;
    }
    renderOrder();
    loadBalance();
  });
}

function payButton(order) {
  if (!state.config.sandbox_payments || order.status !== "awaiting_payment") return null;
  return el("button", { type: "button", class: "pay", onclick: () => paySandbox(order.id) }, t("paySandbox"));
}

function renderOrder() {
  const card = $("order");
  const order = state.order;
  card.hidden = !order;
  if (!order) return;
  const link =
    order.status === "awaiting_payment" && order.payment.url && !state.config.sandbox_payments
      ? el("a", { href: order.payment.url, rel: "noopener" }, t("payOnline"))
      : null;
  card.replaceChildren(
    el("h3", {}, t("orderTitle", { id: order.id })),
    el("p", {}, t("orderLine", { quantity: order.quantity, amount: rupiah(order.amount_idr) })),
    el("p", { class: `status status-${order.status}`, id: "order-status" }, t(`order_${order.status}`)),
    payButton(order),
    link,
  );
}

async function paySandbox(orderId) {
  await busy($("view-buy"), async () => {
    await call("POST", `/v1/dev/payments/${encodeURIComponent(orderId)}/pay`);
    const order = await call("GET", `/v1/orders/${encodeURIComponent(orderId)}`, { auth: true });
    if (state.order && state.order.id === order.id) state.order = order;
    renderOrder();
    await loadBalance();
    if (state.view === "history") await loadHistory();
    if (order.status === "paid") showInfo("paid");
  });
}

// ---- PIN -------------------------------------------------------------------------------------

async function savePin(event) {
  event.preventDefault();
  const form = event.target;
  const pin = $("new-pin").value;
  if (pin !== $("new-pin-again").value) {
    state.message = { kind: "error", problem: { localKey: "pinMismatch" } };
    renderMessage();
    return;
  }
  await busy(form, async () => {
    await call("PUT", "/v1/account/pin", {
      json: { pin, current_pin: $("current-pin").value },
      auth: true,
    });
    form.reset();
    showInfo("pinSaved");
  });
}

async function sendResetCode() {
  await busy($("view-pin"), async () => {
    const current = session();
    const sent = await call("POST", "/v1/auth/otp", { json: { phone: current.phone } });
    $("reset-form").hidden = false;
    showInfo("codeSent", { phone: sent.phone, minutes: Math.max(1, Math.round(sent.expires_in / 60)) });
    $("reset-code").focus();
  });
}

async function resetPin(event) {
  event.preventDefault();
  const form = event.target;
  await busy(form, async () => {
    await call("POST", "/v1/account/pin/reset", {
      json: { code: $("reset-code").value.trim(), pin: $("reset-pin").value },
      auth: true,
    });
    form.reset();
    form.hidden = true;
    showInfo("pinReset");
  });
}

// ---- placing the stamp -----------------------------------------------------------------------

async function chooseFile() {
  const file = $("document").files[0] || null;
  state.file = file;
  state.preview = null;
  state.rect = null;
  state.stampResult = null;
  renderStampResult();
  renderPreview();
  if (!file) return;
  if (file.size > state.config.max_upload_bytes) {
    state.file = null;
    state.message = {
      kind: "error",
      problem: { detail: t("tooLarge", { megabytes: Math.floor(state.config.max_upload_bytes / 1048576) }) },
    };
    renderMessage();
    return;
  }
  const name = $("doc-name");
  if (!name.value || name.dataset.fromFile === "true") {
    name.value = file.name.replace(/\.pdf$/i, "").slice(0, 200);
    name.dataset.fromFile = "true";
  }
  await loadPreview(1);
}

async function loadPreview(page) {
  if (!state.file) return;
  const file = state.file;
  clearMessage();
  $("placement-text").textContent = t("drawing");
  await busy($("stamp-form"), async () => {
    const form = new FormData();
    form.append("file", file);
    form.append("page", String(page));
    const preview = await call("POST", "/v1/previews", { form, auth: true });
    if (state.file !== file) return;
    if (!state.preview || state.preview.page !== preview.page) state.rect = null;
    state.preview = preview;
    renderPreview();
  });
  if (!state.preview) $("placement-text").textContent = "";
}

function renderPreview() {
  const preview = state.preview;
  $("placement").hidden = !preview;
  const image = $("preview-image");
  if (!preview) {
    image.removeAttribute("src");
    $("stamp-box").hidden = true;
    return;
  }
  if (image.getAttribute("src") !== preview.image) image.src = preview.image;
  image.alt = t("previewAlt", { page: preview.page, count: preview.page_count });
  const pageInput = $("page");
  pageInput.max = String(preview.page_count);
  pageInput.value = String(preview.page);
  $("page-count").textContent = t("pageCount", { count: preview.page_count });
  const box = $("stamp-box");
  const rect = state.rect;
  box.hidden = !rect;
  if (rect) {
    const [llx, lly, urx, ury] = rect;
    box.style.left = `${(llx / preview.width_pt) * 100}%`;
    box.style.bottom = `${(lly / preview.height_pt) * 100}%`;
    box.style.width = `${((urx - llx) / preview.width_pt) * 100}%`;
    box.style.height = `${((ury - lly) / preview.height_pt) * 100}%`;
    $("placement-text").textContent = t("placedAt", {
      page: preview.page,
      x: Math.round(llx),
      y: Math.round(lly),
      side: Math.round(urx - llx),
    });
  } else {
    $("placement-text").textContent = t("defaultPlacement", { page: preview.page });
  }
}

function clamp(value, low, high) {
  return Math.min(Math.max(value, low), high);
}

// A 100-point square centred on (x, y) in points from the page's bottom-left corner, kept on it.
function placeAt(x, y) {
  const { width_pt: width, height_pt: height } = state.preview;
  const side = Math.min(STAMP_SIDE_PT, width, height);
  const llx = clamp(x - side / 2, 0, width - side);
  const lly = clamp(y - side / 2, 0, height - side);
  state.rect = [llx, lly, llx + side, lly + side];
  renderPreview();
}

function clickPreview(event) {
  if (!state.preview) return;
  const bounds = $("preview-image").getBoundingClientRect();
  if (!bounds.width || !bounds.height) return;
  const fx = clamp((event.clientX - bounds.left) / bounds.width, 0, 1);
  const fy = clamp((event.clientY - bounds.top) / bounds.height, 0, 1);
  placeAt(fx * state.preview.width_pt, (1 - fy) * state.preview.height_pt);
}

// Arrow keys move the box by 10 points (50 with Shift); Enter puts it in the middle.
function keyOnPreview(event) {
  if (!state.preview) return;
  const step = event.shiftKey ? 50 : 10;
  const { width_pt: width, height_pt: height } = state.preview;
  const [llx, lly, urx, ury] = state.rect || [width / 2 - 50, height / 2 - 50, width / 2 + 50, height / 2 + 50];
  const centre = [(llx + urx) / 2, (lly + ury) / 2];
  const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] };
  if (moves[event.key]) {
    placeAt(centre[0] + moves[event.key][0], centre[1] + moves[event.key][1]);
  } else if (event.key === "Enter" || event.key === " ") {
    placeAt(centre[0], centre[1]);
  } else {
    return;
  }
  event.preventDefault();
}

// ---- stamping ------------------------------------------------------------------------------

function stampForm() {
  const form = new FormData();
  form.append("file", state.file);
  form.append("page", $("page").value || "1");
  if (state.rect) form.append("rect", state.rect.map((v) => v.toFixed(2)).join(","));
  form.append("doc_type", $("doc-type").value);
  form.append("doc_name", $("doc-name").value.trim());
  form.append("doc_number", $("doc-number").value.trim());
  if ($("doc-date").value) form.append("doc_date", $("doc-date").value);
  if ($("doc-value").value !== "") form.append("doc_value", String(Math.trunc(Number($("doc-value").value))));
  form.append("pin", $("stamp-pin").value);
  return form;
}

// What makes two submissions the same stamp: everything but the PIN.
function stampFingerprint(form) {
  const file = state.file;
  const fields = [...form.entries()].filter(([name]) => name !== "pin" && name !== "file");
  return JSON.stringify([file.name, file.size, file.lastModified, fields]);
}

async function submitStamp(event) {
  event.preventDefault();
  if (!state.file) return;
  const form = stampForm();
  const fingerprint = stampFingerprint(form);
  if (!state.pendingStamp || state.pendingStamp.fingerprint !== fingerprint) {
    state.pendingStamp = { fingerprint, key: newKey() };
  }
  state.stampResult = null;
  renderStampResult();
  showInfo("stamping");
  state.stampAttempt = { cancelled: false };
  await sendStamp(form, state.pendingStamp, "", state.stampAttempt);
}

function retryAfterSeconds(response, problem) {
  const header = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  const fromBody = problem.waiting_room ? Number(problem.waiting_room.retry_after) : NaN;
  const seconds = Number.isFinite(header) ? header : Number.isFinite(fromBody) ? fromBody : 5;
  return clamp(seconds, 1, 600);
}

// Sends the stamp; a 429 (or a 409 still in flight) goes to the waiting room, which sends the
// very same request again, with the same Idempotency-Key and the latest waiting-room ticket.
async function sendStamp(form, pending, ticket, attempt) {
  const submit = $("stamp-submit");
  submit.disabled = true;
  const headers = { "Idempotency-Key": pending.key };
  if (ticket) headers["Waiting-Room-Ticket"] = ticket;
  try {
    const response = await send("POST", "/v1/stamps", { form, headers, auth: true });
    // Cancelled while this attempt was on its way: only a stamp that happened is still shown.
    if (attempt.cancelled && !response.ok) return;
    const retryable = response.status === 429 || (response.status === 409 && response.headers.has("Retry-After"));
    if (retryable) {
      const problem = await problemOf(response);
      const room = problem.waiting_room && typeof problem.waiting_room === "object" ? problem.waiting_room : null;
      const nextTicket = room && room.ticket ? String(room.ticket) : ticket;
      startWaiting({
        seconds: retryAfterSeconds(response, problem),
        position: room && room.position != null ? room.position : null,
        problem: room ? null : problem,
        retry: () => sendStamp(form, pending, nextTicket, attempt),
      });
      return;
    }
    if (!response.ok) {
      const problem = await problemOf(response);
      // A definite refusal ends this stamp; an unknown outcome (5xx) keeps its key for a retry.
      if (response.status < 500 && state.pendingStamp === pending) state.pendingStamp = null;
      throw new ApiError(response.status, problem);
    }
    if (state.pendingStamp === pending) state.pendingStamp = null;
    state.stampResult = await response.json();
    $("stamp-pin").value = "";
    if (state.view === "waiting") show("stamp", { keepMessage: true });
    showInfo("stamped");
    renderStampResult();
    loadBalance();
  } catch (error) {
    if (state.view === "waiting") show("stamp", { keepMessage: true });
    showError(error);
  } finally {
    submit.disabled = false;
  }
}

function renderStampResult() {
  const card = $("stamp-result");
  const stamp = state.stampResult;
  card.hidden = !stamp;
  if (!stamp) return;
  card.replaceChildren(
    el("h3", {}, t("stamped")),
    el("p", {}, t("serialLine", { serial: "" }), el("code", { id: "stamp-serial" }, stamp.serial)),
    stamp.pdf_url ? downloadButton(stamp) : null,
  );
}

function downloadButton(stamp) {
  return el("button", { type: "button", class: "download", onclick: () => download(stamp) }, t("download"));
}

// Downloads need the bearer token, so the file comes through fetch and leaves as a blob URL.
async function download(stamp) {
  try {
    const response = await send("GET", stamp.pdf_url, { auth: true });
    if (!response.ok) throw new ApiError(response.status, await problemOf(response));
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: `e-meterai-${stamp.serial}.pdf`, hidden: "" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (error) {
    showError(error);
  }
}

// ---- waiting room ----------------------------------------------------------------------------

function startWaiting({ seconds, position, problem, retry }) {
  stopWaiting();
  const until = Date.now() + seconds * 1000;
  state.waiting = { seconds, until, position, problem, retry, sending: false, timer: null };
  show("waiting", { keepMessage: false });
  const waiting = state.waiting;
  waiting.timer = setInterval(() => {
    if (state.waiting !== waiting) return;
    if (Date.now() >= waiting.until) {
      clearInterval(waiting.timer);
      waiting.sending = true;
      renderWaiting();
      retry();
      return;
    }
    renderWaiting();
  }, 250);
  renderWaiting();
  $("waiting-title").focus();
}

function stopWaiting() {
  if (state.waiting) clearInterval(state.waiting.timer);
  state.waiting = null;
}

function renderWaiting() {
  const waiting = state.waiting;
  if (!waiting) return;
  $("waiting-reason").textContent = waiting.problem ? problemText(waiting.problem) : t("waitingBusy");
  const position = $("waiting-position");
  position.hidden = waiting.position === null;
  position.textContent = waiting.position === null ? "" : t("waitingPosition", { position: waiting.position });
  const left = Math.max(0, Math.ceil((waiting.until - Date.now()) / 1000));
  $("waiting-countdown").textContent = waiting.sending
    ? t("waitingSending")
    : t("waitingCountdown", { seconds: left });
  const progress = $("waiting-progress");
  progress.value = waiting.sending ? 1 : 1 - left / waiting.seconds;
}

// The request's key is kept: sending the same stamp again later cannot charge twice.
function cancelWaiting() {
  if (state.stampAttempt) state.stampAttempt.cancelled = true;
  stopWaiting();
  show("stamp");
  showInfo("waitingCancelled");
}

// ---- history ---------------------------------------------------------------------------------

async function loadHistory() {
  if (!session()) return;
  try {
    const [stamps, orders] = await Promise.all([
      call("GET", "/v1/stamps", { auth: true }),
      call("GET", "/v1/orders", { auth: true }),
    ]);
    state.history = { stamps: stamps.stamps, orders: orders.orders };
    renderHistory();
  } catch (error) {
    showError(error);
  }
}

function stampStatus(stamp) {
  let text = t(`stamp_${stamp.status}`);
  if (stamp.status === "released" && stamp.release_reason) text += ` (${t(`release_${stamp.release_reason}`)})`;
  return text;
}

function renderHistory() {
  const history = state.history;
  const stampList = $("stamps");
  const orderList = $("orders");
  if (!history) {
    stampList.replaceChildren();
    orderList.replaceChildren();
    return;
  }
  stampList.replaceChildren(
    ...(history.stamps.length
      ? history.stamps.map((stamp) =>
          el(
            "li",
            { class: "record stamp", "data-id": stamp.id },
            el("strong", {}, stamp.document.name || t("untitled")),
            el("span", { class: `status status-${stamp.status}` }, stampStatus(stamp)),
            el("code", { class: "serial" }, stamp.serial),
            el("span", { class: "when" }, when(stamp.created_at)),
            stamp.status === "stamped" && stamp.pdf_url ? downloadButton(stamp) : null,
          ),
        )
      : [el("li", { class: "empty" }, t("noStamps"))]),
  );
  orderList.replaceChildren(
    ...(history.orders.length
      ? history.orders.map((order) =>
          el(
            "li",
            { class: "record order", "data-id": order.id },
            el("strong", {}, t("orderLine", { quantity: order.quantity, amount: rupiah(order.amount_idr) })),
            el("span", { class: `status status-${order.status}` }, t(`order_${order.status}`)),
            order.refunded_quantity
              ? el("span", {}, t("refundedUnits", { count: order.refunded_quantity }))
              : null,
            el("span", { class: "when" }, when(order.created_at)),
            payButton(order),
          ),
        )
      : [el("li", { class: "empty" }, t("noOrders"))]),
  );
}

// ---- verification ----------------------------------------------------------------------------

async function verify(event) {
  event.preventDefault();
  const file = $("verify-file").files[0];
  if (!file) return;
  state.report = null;
  state.reportFile = null;
  state.reports = {};
  renderReport();
  showInfo("checking");
  await busy(event.target, async () => {
    const language = state.language;
    const report = await verifyFile(file, language);
    const reports = { [language]: report };
    state.reportFile = file;
    state.reports = reports;
    state.report = report;
    clearMessage();
    renderReport();
    // The language may have been switched while the file was being checked.
    await translateReport();
  });
}

// The server reports what is wrong with a signature in the language asked for.
function verifyFile(file, language) {
  const form = new FormData();
  form.append("file", file);
  return call("POST", "/v1/verify", { form, headers: { "Accept-Language": language } });
}

// The report in the page's language: kept from before, or asked for once more (only when it has
// problems to tell, the one part the server words).
async function translateReport() {
  const { reportFile, reports } = state;
  const language = state.language;
  if (!reportFile || !state.report || state.report === reports[language]) return;
  let report = reports[language];
  if (!report) {
    if (!Object.values(reports).some((r) => r.signatures.some((s) => s.problems.length))) {
      reports[language] = state.report;
      return;
    }
    try {
      report = await verifyFile(reportFile, language);
    } catch {
      // The report stays as it was, in the language it came in.
      return;
    }
    reports[language] = report;
  }
  // Another document was checked meanwhile, or the language switched again.
  if (state.reports !== reports || state.language !== language) return translateReport();
  state.report = report;
  renderReport();
}

function signatureIsGood(s) {
  return (
    s.signature_valid &&
    s.document_intact &&
    s.chain_trusted &&
    s.later_changes !== "modified" &&
    (!s.serial || s.serial_status === "stamped")
  );
}

function check(ok, text) {
  return el("li", { class: ok ? "good" : "bad" }, el("span", { "aria-hidden": "true" }, ok ? "✓ " : "✗ "), text);
}

function renderReport() {
  const box = $("verify-report");
  const report = state.report;
  box.hidden = !report;
  if (!report) return;
  if (!report.signatures.length) {
    box.replaceChildren(el("p", { class: "verdict bad" }, t("noSignatures")));
    return;
  }
  const items = report.signatures.map((s) => {
    const good = signatureIsGood(s);
    const changes = !s.document_intact
      ? check(false, t("notIntact"))
      : s.later_changes === "modified"
        ? check(false, t("changesModified"))
        : s.later_changes === "allowed"
          ? check(true, t("changesAllowed"))
          : check(true, t("changesNone"));
    const timestamp = !s.has_timestamp
      ? el("li", {}, t("noTimestamp"))
      : s.timestamp_valid
        ? check(true, t("timestampValid", { date: when(s.timestamp_time) }))
        : check(false, t("timestampInvalid"));
    const lines = [
      check(s.signature_valid, t(s.signature_valid ? "sigValid" : "sigInvalid")),
      changes,
      check(s.covers_whole_document, t(s.covers_whole_document ? "coversWhole" : "coversPart")),
      check(s.chain_trusted, t(s.chain_trusted ? "trusted" : "untrusted")),
      s.signer ? el("li", {}, t("signedBy", { signer: commonName(s.signer), date: when(s.signed_at) })) : null,
      timestamp,
      s.serial ? serialCheck(s) : null,
      ...s.problems.map((problem) => el("li", { class: "bad" }, problem)),
    ];
    return el(
      "article",
      { class: "signature" },
      el("h3", {}, s.serial ? t("emeteraiSerial", { serial: s.serial }) : t("otherSignature", { field: s.field })),
      el("p", { class: `verdict ${good ? "good" : "bad"}` }, t(good ? "verdictValid" : "verdictInvalid")),
      el("ul", { class: "checks" }, ...lines.filter(Boolean)),
    );
  });
  box.replaceChildren(el("p", {}, t("signatureCount", { count: report.signatures.length })), ...items);
}

function serialCheck(s) {
  if (s.serial_status === "stamped") return check(true, t("serial_recorded", { serial: s.serial }));
  return check(false, serialText(s.serial, s.serial_status, ""));
}

// "CN=e-meterai Signer,O=...,C=ID" -> "e-meterai Signer": the name a person recognises.
function commonName(subject) {
  const match = /(?:^|,)\s*CN=((?:\\,|[^,])+)/.exec(subject);
  return match ? match[1].replace(/\\,/g, ",") : subject;
}

function serialText(serial, status, date) {
  const known = ["stamped", "reserved", "void", "unknown"].includes(status) ? status : "unknown";
  return t(`serial_${known}`, { serial, date: when(date) });
}

async function lookUpSerial(event) {
  event.preventDefault();
  const serial = $("serial").value.trim().toUpperCase();
  await busy(event.target, async () => {
    state.serial = await call("GET", `/v1/serials/${encodeURIComponent(serial)}`);
    clearMessage();
    renderSerial();
  });
}

function renderSerial() {
  const node = $("serial-result");
  const found = state.serial;
  node.hidden = !found;
  if (found) {
    node.textContent = serialText(found.serial, found.status, found.stamped_at);
    node.className = found.status === "stamped" ? "good" : "bad";
  }
}

// ---- start -----------------------------------------------------------------------------------

async function loadConfig() {
  try {
    state.config = { ...state.config, ...(await call("GET", "/v1/config")) };
  } catch {
    // The defaults above: no sandbox button, the usual upload limit.
  }
}

function wire() {
  $("language").addEventListener("click", () => {
    state.language = state.language === "id" ? "en" : "id";
    localStorage.setItem(LANGUAGE_KEY, state.language);
    applyLanguage();
    translateReport();
  });
  $("sign-out").addEventListener("click", signOut);
  for (const tab of document.querySelectorAll("nav [data-view]")) {
    tab.addEventListener("click", () => show(tab.dataset.view));
  }
  $("otp-form").addEventListener("submit", requestCode);
  $("token-form").addEventListener("submit", signIn);
  $("change-phone").addEventListener("click", () => {
    state.otp = null;
    renderOtp();
    $("phone").focus();
  });
  $("order-form").addEventListener("submit", createOrder);
  $("pin-form").addEventListener("submit", savePin);
  $("reset-send").addEventListener("click", sendResetCode);
  $("reset-form").addEventListener("submit", resetPin);
  $("document").addEventListener("change", chooseFile);
  $("page").addEventListener("change", () => {
    if (!state.preview) return;
    const page = Math.trunc(Number($("page").value));
    if (page >= 1 && page <= state.preview.page_count) {
      if (page !== state.preview.page) loadPreview(page);
    } else {
      $("page").value = String(state.preview.page);
    }
  });
  $("preview-image").addEventListener("click", clickPreview);
  $("preview").addEventListener("keydown", keyOnPreview);
  $("doc-name").addEventListener("input", (event) => {
    event.target.dataset.fromFile = "false";
  });
  $("stamp-form").addEventListener("submit", submitStamp);
  $("waiting-cancel").addEventListener("click", cancelWaiting);
  $("waiting-title").setAttribute("tabindex", "-1");
  $("history-refresh").addEventListener("click", loadHistory);
  $("verify-form").addEventListener("submit", verify);
  $("serial-form").addEventListener("submit", lookUpSerial);
  window.addEventListener("hashchange", () => show(location.hash.slice(1)));
}

async function start() {
  wire();
  applyLanguage();
  renderSignedIn();
  show(location.hash.slice(1));
  if (session() && state.view !== "stamp") loadBalance();
  await Promise.all([loadConfig(), loadNotice()]);
  setInterval(loadNotice, NOTICE_REFRESH_MS);
  renderOrder();
  renderHistory();
  document.body.dataset.ready = "true";
}

start();

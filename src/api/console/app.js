// The operator console: a client of the public read and write API (SPEC "Read API", "Write
// API") and nothing else. Every value shown comes from a /v1 answer and is put on the page as
// text, never as markup: names, messages and links are client input, and what an operator
// types is sent as data.

const PAGE = Number(new URLSearchParams(location.search).get("page")) || 10;
const DEBOUNCE_MS = 250;
const WINDOW_KINDS = new Set(["whatsapp", "instagram"]); // channels with SPEC's 24 h reply window

const $ = (id) => document.getElementById(id);

/** An element with attributes and children (strings become text nodes). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// --- session ------------------------------------------------------------------------------

const session = {
  get project() { return sessionStorage.getItem("appealflow.project"); },
  get token() { return sessionStorage.getItem("appealflow.token"); },
  save(project, token) {
    sessionStorage.setItem("appealflow.project", project);
    sessionStorage.setItem("appealflow.token", token);
  },
  clear() {
    sessionStorage.removeItem("appealflow.project");
    sessionStorage.removeItem("appealflow.token");
  },
};

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** GET a path under the signed-in project; the JSON answer or an ApiError. */
async function api(path, project = session.project, token = session.token) {
  const url = `/v1/projects/${encodeURIComponent(project)}${path}`;
  let resp;
  try {
    resp = await fetch(url, { headers: { Authorization: `Bearer ${token}`, Accept: "application/json" } });
  } catch {
    throw new ApiError(0, "network", "appealflow did not answer: is it still running?");
  }
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new ApiError(resp.status, body?.error?.code ?? "error", body?.error?.message ?? resp.statusText);
  return body;
}

/** POSTs a command of the signed-in project; its answer as {status, body}, never a throw. */
async function command(cmd) {
  return post("/commands?wait=10s", cmd);
}

/** POSTs JSON to a path under the signed-in project: {status, body}, never a throw. */
async function post(path, payload) {
  const url = `/v1/projects/${encodeURIComponent(session.project)}${path}`;
  try {
    const resp = await fetch(url, {
      method: "POST",
      headers: { Authorization: `Bearer ${session.token}`, "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(payload),
    });
    return { status: resp.status, body: await resp.json().catch(() => ({})) };
  } catch {
    return { status: 0, body: { error: { message: "appealflow did not answer: is it still running?" } } };
  }
}

/** What became of a command, in words an operator reads. */
function outcomeText(label, { status, body }) {
  switch (status) {
    case 200: return [`${label}: done.`, "ok"];
    case 202: return [`${label}: sent, not applied yet. The card refreshes when you open it again.`, "warn"];
    case 409: return [`${label}: not done. Someone changed this card meanwhile (it is at revision ${body.revision}); the card below is the fresh one, try again.`, "bad"];
    case 422: return [`${label}: refused. ${body.reason ?? body.error?.message ?? ""}`, "bad"];
    case 403: return [`${label}: this token may only read. Sign in with a token that may act.`, "bad"];
    default: return [`${label}: not done. ${body?.error?.message ?? "The request failed."}`, "bad"];
  }
}

function showOutcome(label, answer) {
  const [text, kind] = outcomeText(label, answer);
  const el = $("outcome");
  el.className = `outcome ${kind}`;
  el.textContent = text;
  el.hidden = false;
}

/** Sends `cmd` about the open card (at the revision shown), says what became of it, and
 *  shows the card as it is now. */
async function act(label, card, cmd) {
  return actThen(label, card.revision, cmd, () => showCard(card.id, false));
}

/** Sends `cmd` at the card revision the page shows, says what became of it, and draws the
 *  view again (`redraw`) when the command changed something or found the card changed. */
async function actThen(label, revision, cmd, redraw) {
  // A form the operator began before the card changed under it sends the revision it was
  // begun at: the change it did not see makes it a 409, never a silent overwrite.
  const at = revision === undefined ? undefined : (formBegunAt ?? revision);
  const answer = await command(at === undefined ? cmd : { expected_revision: at, ...cmd });
  showOutcome(label, answer);
  if (answer.status === 200 || answer.status === 409) await redraw();
  return answer;
}

/** What a failed call means to an operator. */
function explain(e) {
  if (e.status === 401) return "The token was not accepted. Sign in again with a token of [[api.tokens]].";
  if (e.status === 404 && e.message === "no such project") return "This token does not open that project, or there is no such project.";
  if (e.status === 404) return `Not found: ${e.message.replace(/^no such /, "")}.`;
  return e.message;
}

/** Shows a failure; a rejected token ends the session. */
function fail(e) {
  if (e.status === 401 || (e.status === 404 && e.message === "no such project")) {
    session.clear();
    showLogin(explain(e));
    return;
  }
  $("view").replaceChildren(h("p", { class: "error", role: "alert" }, explain(e)));
}

function showLogin(message = "") {
  $("workspace").hidden = true;
  $("session").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  if (session.project) $("login-project").value = session.project;
  $("login-token").value = "";
  $("login-token").focus();
}

/** The signed-in project's channels and templates (`GET /v1/projects/{project}`). */
let projectInfo = null;

async function loadProject() {
  try { projectInfo = await api(""); } catch { projectInfo = null; }
}

function showWorkspace() {
  loadProject();
  $("login").hidden = true;
  $("workspace").hidden = false;
  $("session").hidden = false;
  $("session-project").textContent = session.project;
  route();
  if (!location.hash) $("search-input").focus();
}

async function signIn(event) {
  event.preventDefault();
  const project = $("login-project").value.trim();
  const token = $("login-token").value;
  if (!project || !token) {
    $("login-error").textContent = "Type both the project and the token.";
    return;
  }
  try {
    await api("/clients?q=a&limit=1", project, token); // any answer but 401/404 proves both
  } catch (e) {
    $("login-error").textContent = explain(e);
    return;
  }
  session.save(project, token);
  showWorkspace();
}

// --- formatting ---------------------------------------------------------------------------

const when = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const clock = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

function time(iso, fmt = when) {
  return iso ? h("time", { datetime: iso }, fmt.format(new Date(iso))) : "";
}

/** "+79991234567" as people read it: "+7 999 123-45-67"; other numbers as stored. */
function phone(e164) {
  const m = /^\+7(\d{3})(\d{3})(\d{2})(\d{2})$/.exec(e164);
  return m ? `+7 ${m[1]} ${m[2]}-${m[3]}-${m[4]}` : e164;
}

function shown(field, value) {
  return field === "phone" ? phone(value) : value;
}

function replyWindow(v) {
  const w = v.reply_window;
  if (w.open_until) {
    const until = new Date(w.open_until);
    const sameDay = until.toDateString() === new Date().toDateString();
    return h("span", { class: "badge open" }, `open until ${sameDay ? clock.format(until) : when.format(until)}`);
  }
  if (w.template_only) return h("span", { class: "badge templates" }, "templates only");
  if (WINDOW_KINDS.has(v.channel_kind)) return h("span", { class: "badge closed" }, "closed");
  return h("span", { class: "badge" }, "no reply limit");
}

/** A link only to http(s) addresses: an attachment URL is client input. */
function safeLink(url, text) {
  try {
    const u = new URL(url);
    if (u.protocol === "https:" || u.protocol === "http:") {
      return h("a", { href: u.href, rel: "noopener noreferrer nofollow", target: "_blank" }, text);
    }
  } catch { /* not a URL: shown as text */ }
  return h("span", {}, `${text} (${url})`);
}

// --- search -------------------------------------------------------------------------------

let searchSeq = 0;
let debounce;

function onSearchInput() {
  clearTimeout(debounce);
  debounce = setTimeout(search, DEBOUNCE_MS);
}

async function search() {
  const q = $("search-input").value.trim();
  const seq = ++searchSeq;
  if (!q) {
    $("results").replaceChildren();
    $("search-status").textContent = "";
    return;
  }
  $("search-status").textContent = "Searching…";
  let body;
  try {
    body = await api(`/clients?q=${encodeURIComponent(q)}`);
  } catch (e) {
    if (seq !== searchSeq) return;
    if (e.status === 400) {
      $("search-status").textContent = e.message;
      return;
    }
    fail(e);
    return;
  }
  if (seq !== searchSeq) return; // an older answer arriving after a newer one
  const found = body.clients;
  $("search-status").textContent =
    found.length === 0 ? "No client matches." : `${found.length} client${found.length === 1 ? "" : "s"} found.`;
  $("results").replaceChildren(...found.map(resultItem));
}

function resultItem(r) {
  const why = r.matched.map((m) => `${m.field} ${shown(m.field, m.value)} (${m.how})`).join(", ");
  return h("li", {},
    h("button", { type: "button", "data-client": r.client.id, onclick: () => go(`#/clients/${encodeURIComponent(r.client.id)}`) },
      h("span", { class: "name" }, r.client.name ?? "(no name)"),
      h("span", { class: "why" }, `${r.client.type} · ${r.client.appeal_count} appeal${r.client.appeal_count === 1 ? "" : "s"} · matched ${why}`)));
}

/** Arrow keys walk the results; Escape goes back to the search box. */
function onResultsKey(event) {
  const buttons = [...$("results").querySelectorAll("button")];
  const at = buttons.indexOf(document.activeElement);
  if (event.key === "ArrowDown" && buttons.length) {
    event.preventDefault();
    buttons[Math.min(at + 1, buttons.length - 1)].focus();
  } else if (event.key === "ArrowUp" && at >= 0) {
    event.preventDefault();
    (at === 0 ? $("search-input") : buttons[at - 1]).focus();
  } else if (event.key === "Escape") {
    $("search-input").focus();
  }
}

// --- a new card ---------------------------------------------------------------------------

/** `create_client` from the search side: a name and the contacts an operator has. */
function createForm() {
  return actionForm("create", "Create client", [
    { name: "name", label: "Name" },
    { name: "phone", label: "Phone", optional: true },
    { name: "email", label: "E-mail", optional: true }],
  async ({ name, phone, email }) => {
    const contacts = [["phone", phone], ["email", email]]
      .filter(([, value]) => value.trim())
      .map(([contact_type, value]) => ({ contact_type, value }));
    const answer = await command({ type: "create_client", name, contacts });
    showOutcome("Create client", answer);
    if (answer.status === 200 && answer.body.client) {
      keepOutcome = true; // the outcome stays above the card it made
      go(`#/clients/${encodeURIComponent(answer.body.client.id)}`);
    }
  });
}

// --- views --------------------------------------------------------------------------------

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

async function route() {
  if (!session.token) return;
  const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const current = $("results").querySelectorAll("button");
  current.forEach((b) => b.setAttribute("aria-current", String(parts[0] === "clients" && b.dataset.client === parts[1])));
  try {
    if (parts[0] === "clients" && parts[1]) await showCard(parts[1]);
    else if (parts[0] === "appeals" && parts[1]) await showAppeal(parts[1]);
    else if (parts[0] === "scenarios") await showScenarios();
  } catch (e) {
    fail(e);
  }
}

function section(title, ...content) {
  const id = `s-${title.toLowerCase().replace(/\W+/g, "-")}`;
  return h("section", { "aria-labelledby": id }, h("h3", { id }, title), ...content);
}

function valueList(map, empty) {
  const entries = Object.entries(map);
  if (!entries.length) return h("p", { class: "muted" }, empty);
  return h("dl", { class: "values" }, entries.flatMap(([field, values]) => [
    h("dt", {}, field),
    h("dd", {}, values.map((v, i) => [i ? ", " : "", v.display, " ", h("span", { class: "badge", title: "source" }, v.source)])),
  ]));
}

/** The card's contacts, each with a button that removes it. */
function contactList(card) {
  const entries = Object.entries(card.contacts);
  if (!entries.length) return h("p", { class: "muted" }, "No contacts.");
  const client = { client_id: card.id };
  const item = (type, v) => {
    const li = h("li", { "data-contact": `${type}:${v.value}` },
      v.display, " ", h("span", { class: "badge", title: "source" }, v.source), " ",
      h("button", { type: "button", class: "small secondary", "data-copy": `${type}:${v.value}`, onclick: () => copy(v.display) }, "Copy"), " ",
      v.source === "manual"
        ? h("button", { type: "button", class: "small secondary", "data-edit": `${type}:${v.value}`, onclick: () => li.replaceChildren(editForm(card, type, v)) }, "Edit contact")
        : "", " ",
      h("button", { type: "button", class: "small secondary", "data-remove": `${type}:${v.value}`,
        onclick: () => act("Remove contact", card, { type: "remove_contact", client, contact_type: type, value: v.value }) },
        "Remove contact"));
    return li;
  };
  return h("dl", { class: "values", id: "contacts" }, entries.flatMap(([type, values]) => [
    h("dt", {}, type),
    h("dd", {}, h("ul", { class: "plain bare" }, values.map((v) => item(type, v)))),
  ]));
}

/** An inline form replacing one hand-added contact with another value of its type. */
function editForm(card, type, v) {
  const id = `edit-${type}`;
  const form = actionForm(id, "Save", [{ name: "value", label: `New ${type}` }],
    ({ value }) => act("Edit contact", card, { type: "edit_contact", client: { client_id: card.id }, contact_type: type, old_value: v.value, value }));
  queueMicrotask(() => { const f = document.getElementById(`${id}-value`); if (f) { f.value = v.display; f.focus(); } });
  return form;
}

/** Copies a value for the operator to paste elsewhere. */
async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
    showOutcome("Copy", { status: 200, body: {} });
    $("outcome").textContent = `Copied ${text}.`;
  } catch {
    showOutcome("Copy", { status: -1, body: { error: { message: `The browser did not allow it; select ${text} and copy it by hand.` } } });
  }
}

/** A one-line form: labelled inputs and a button whose text names the action. */
/** The card revision shown when the operator began typing into the form being submitted. */
let formBegunAt;

/** The card revision each form of a view was begun at, by view (the location) and form id:
 *  it outlives the live redraws of the view and ends when the form is sent. */
const begun = new Map();

/** The card revision the open view shows. */
function shownRevision() {
  const r = $("view").querySelector("[data-revision]")?.dataset.revision;
  return r === undefined ? undefined : Number(r);
}

function actionForm(id, label, fields, submit) {
  const inputs = fields.map((f) => f.options
    ? h("select", { id: `${id}-${f.name}`, name: f.name }, f.options.map((o) => h("option", { value: o }, o)))
    : h(f.multiline ? "textarea" : "input", { id: `${id}-${f.name}`, name: f.name, autocomplete: "off", required: !f.optional, rows: f.multiline ? 2 : undefined }));
  const form = h("form", { class: "action", id, novalidate: true },
    fields.map((f, i) => h("div", { class: "field" }, h("label", { for: `${id}-${f.name}` }, f.label), inputs[i])),
    h("button", { type: "submit" }, label));
  const key = () => `${location.hash}|${id}`;
  form.addEventListener("input", () => { if (!begun.has(key())) begun.set(key(), shownRevision()); });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = Object.fromEntries(fields.map((f, i) => [f.name, inputs[i].value]));
    const missing = fields.find((f, i) => !f.options && !f.optional && !inputs[i].value.trim());
    if (missing) {
      showOutcome(label, { status: -1, body: { error: { message: `Type the ${missing.label.toLowerCase()} first.` } } });
      return;
    }
    formBegunAt = begun.get(key());
    begun.delete(key());
    try { await submit(values); } finally { formBegunAt = undefined; }
  });
  return form;
}

/** Merging: find the other card, see what the merge would make, confirm. */
function mergePicker(card) {
  const results = h("ul", { class: "plain bare", id: "merge-candidates" });
  const preview = h("div", { id: "merge-preview" });
  const find = actionForm("merge-find", "Find a card to merge", [{ name: "q", label: "Merge with" }], async ({ q }) => {
    let found;
    try {
      found = await api(`/clients?q=${encodeURIComponent(q.trim())}`);
    } catch (e) {
      showOutcome("Find a card to merge", { status: e.status, body: { error: { message: explain(e) } } });
      return;
    }
    const others = found.clients.filter((r) => r.client.id !== card.id);
    results.replaceChildren(...(others.length
      ? others.map((r) => h("li", {}, h("button", { type: "button", class: "small secondary", "data-candidate": r.client.id,
          onclick: () => showPreview(card, r.client.id, "target", preview) }, `Preview the merge with ${r.client.name ?? "(no name)"}`),
        " ", h("span", { class: "muted ids" }, r.client.id)))
      : [h("li", { class: "muted" }, "No other card matches.")]));
  });
  return h("div", { class: "merge" }, find, results, preview);
}

/** The card `merge_clients` would make of `card` and `other` (the pipeline's own merge),
 *  the name to keep as a choice, and the button that merges exactly what is shown. */
async function showPreview(card, other, keep, into) {
  const ask = { target: { client_id: card.id }, source: { client_id: other }, keep_name_from: keep };
  const { status, body } = await post("/merges/preview", ask);
  if (status !== 200) {
    showOutcome("Merge preview", { status: status === 409 ? 422 : status, body: { reason: body?.error?.message, error: body?.error } });
    into.replaceChildren();
    return;
  }
  const names = body.name_options.map((o) => h("label", { class: "choice" },
    h("input", { type: "radio", name: "keep-name", value: o.from, checked: o.from === keep, onchange: () => showPreview(card, other, o.from, into) }),
    ` ${o.name} `, h("span", { class: "muted" }, `(${o.source})`)));
  const confirm = async () => {
    const answer = await command({ type: "merge_clients", ...ask, target_revision: body.target_revision, source_revision: body.source_revision });
    if (answer.status === 409) {
      await showPreview(card, other, keep, into);
      showOutcome("Merge", answer);
      $("outcome").textContent = "Merge: not done. Someone changed one of the cards meanwhile; the preview below is the fresh one: check it and merge again.";
      return;
    }
    showOutcome("Merge", answer);
    if (answer.status === 200) await showCard(card.id, false);
  };
  into.replaceChildren(h("div", { class: "preview", id: "preview" },
    h("h4", {}, "The card the merge makes"),
    h("p", {}, h("strong", { id: "preview-name" }, body.card.name ?? "(no name)"), ` · ${body.card.appeal_count} appeal${body.card.appeal_count === 1 ? "" : "s"}`),
    names.length ? h("fieldset", {}, h("legend", {}, "Name to keep"), names) : "",
    valueList(body.card.contacts, "No contacts."),
    body.over_limit.length
      ? h("p", { class: "note", id: "preview-over-limit" }, "More hand-added contacts than a card may hold: ",
        body.over_limit.map((o) => `${o.contact_type} ${o.values.join(", ")}`).join("; "), ". The merge keeps them all.")
      : "",
    h("p", {}, h("button", { type: "button", id: "merge-confirm", onclick: confirm }, "Merge"), " ",
      h("button", { type: "button", class: "secondary", onclick: () => into.replaceChildren() }, "Cancel"))));
}

/** Sending a message from the card to one of its channels, with the channel's reply window:
 *  where only a template may go, the form asks for the template instead of text. */
function sendForm(card) {
  const channels = card.technical.visitors;
  if (!channels.length) return "";
  const channel = h("select", { id: "send-channel", name: "channel" },
    channels.map((v) => h("option", { value: v.channel_id }, `${v.channel_id} (${v.channel_kind ?? "channel"})`)));
  const window = h("p", { class: "muted", id: "send-window" });
  const textField = h("div", { class: "field" }, h("label", { for: "send-text" }, "Message"), h("textarea", { id: "send-text", rows: 2 }));
  // The project's approved templates as a choice, each with its parameters; a project that
  // lists none takes a template's name as typed.
  const templates = projectInfo?.templates ?? [];
  const params = h("div", { class: "params", id: "send-params" });
  const picker = templates.length
    ? h("select", { id: "send-template" }, templates.map((t) => h("option", { value: t.name }, t.description ? `${t.name}: ${t.description}` : t.name)))
    : h("input", { id: "send-template", autocomplete: "off" });
  const showParams = () => {
    const t = templates.find((t) => t.name === picker.value);
    params.replaceChildren(...(t?.params ?? []).map((name) => h("div", { class: "field" },
      h("label", { for: `send-param-${name}` }, name), h("input", { id: `send-param-${name}`, "data-param": name, autocomplete: "off" }))));
  };
  picker.addEventListener("change", showParams);
  queueMicrotask(showParams);
  const templateField = h("div", { class: "field" }, h("label", { for: "send-template" }, "Template"), picker, params);
  const shownWindow = () => {
    const v = channels.find((c) => c.channel_id === channel.value);
    const onlyTemplates = v.reply_window.template_only;
    window.replaceChildren("Reply window: ", replyWindow(v), onlyTemplates ? " — only an approved template may go now." : "");
    textField.hidden = onlyTemplates;
    templateField.hidden = !onlyTemplates;
  };
  channel.addEventListener("change", shownWindow);
  const form = h("form", { class: "action send", id: "send", novalidate: true },
    h("div", { class: "field" }, h("label", { for: "send-channel" }, "Channel"), channel), textField, templateField,
    h("button", { type: "submit" }, "Send message"), window);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const onlyTemplates = !templateField.hidden;
    const text = $("send-text").value, template = $("send-template").value.trim();
    if (onlyTemplates ? !template : !text.trim()) {
      showOutcome("Send message", { status: -1, body: { error: { message: onlyTemplates ? "Type the template's name first." : "Type the message first." } } });
      return;
    }
    const values = Object.fromEntries([...params.querySelectorAll("input[data-param]")].map((i) => [i.dataset.param, i.value]));
    const body = onlyTemplates ? { template: { name: template, params: values } } : { text };
    const answer = await act("Send message", card, { type: "send_outbound", client: { client_id: card.id }, channel_id: channel.value, ...body });
    const refused = answer.status === 200 && answer.body.events?.some((e) => e.type === "outbound.refused");
    if (refused) showOutcome("Send message", { status: 422, body: { reason: "the channel refused it (see the reply window); nothing was sent." } });
  });
  queueMicrotask(shownWindow);
  return form;
}

/** The card's actions: each a command of the write API about this card. */
function cardActions(card) {
  const client = { client_id: card.id };
  return h("div", { class: "actions" },
    actionForm("rename", "Rename", [{ name: "name", label: "New name" }],
      ({ name }) => act("Rename", card, { type: "rename_client", client, name })),
    actionForm("add-contact", "Add contact", [
      { name: "type", label: "Contact type", options: ["phone", "email", "crm_id"] },
      { name: "value", label: "Contact" }],
    ({ type, value }) => act("Add contact", card, { type: "add_contact", client, contact_type: type, value })),
    actionForm("field", "Set field", [{ name: "field", label: "Field" }, { name: "value", label: "Value" }],
      ({ field, value }) => act("Set field", card, { type: "set_client_field", client, field, value })),
    actionForm("tag", "Tag", [{ name: "tag", label: "Tag" }],
      ({ tag }) => act("Tag", card, { type: "tag_client", client, tag })),
    actionForm("comment", "Comment", [{ name: "text", label: "Comment on the client", multiline: true }],
      ({ text }) => act("Comment", card, { type: "comment_client", client, text })));
}

/** Set when a view is opened by an action whose outcome should stay shown above it. */
let keepOutcome = false;

async function showCard(id, focus = true) {
  if (focus && !keepOutcome) $("outcome").hidden = true;
  keepOutcome = false;
  const card = await api(`/clients/${encodeURIComponent(id)}`);
  const [timeline, merges] = await Promise.all([
    api(`/clients/${encodeURIComponent(card.id)}/timeline?limit=${PAGE}`),
    api(`/clients/${encodeURIComponent(card.id)}/merges`),
  ]);
  const rows = h("tbody", {});
  const more = h("button", { type: "button", class: "secondary", id: "timeline-more" }, "Show older appeals");
  let next = timeline.next;
  const addPage = (page) => rows.append(...page.appeals.map(timelineRow));
  addPage(timeline);
  more.hidden = !next;
  more.addEventListener("click", async () => {
    try {
      const page = await api(`/clients/${encodeURIComponent(card.id)}/timeline?limit=${PAGE}&before=${encodeURIComponent(next)}`);
      addPage(page);
      next = page.next;
      more.hidden = !next;
      rows.lastElementChild?.querySelector("button")?.focus();
    } catch (e) { fail(e); }
  });

  const view = h("article", { "aria-labelledby": "card-title", id: "card", "data-revision": card.revision },
    card.resolved_from ? h("p", { class: "note" }, `Card ${card.resolved_from} was merged into this one.`) : "",
    h("div", { class: "card-head" },
      h("h2", { id: "card-title", tabindex: "-1" }, card.name ?? "(no name)"),
      h("span", { class: "badge" }, card.type),
      h("span", { class: "muted" }, `${card.appeal_count} appeal${card.appeal_count === 1 ? "" : "s"} · since `, time(card.created_at))),
    section("Actions", cardActions(card), sendForm(card), mergePicker(card)),
    section("Contacts", contactList(card)),
    section("Channels", technical(card.technical)),
    section("Fields", valueList(card.fields, "No fields.")),
    card.invalid_values.length ? section("Values that could not be read",
      h("ul", { class: "plain" }, card.invalid_values.map((v) => h("li", {}, `${v.field}: ${v.display} (${v.source}, `, time(v.at), ")")))) : "",
    card.crm ? section("CRM", h("p", {}, "CRM id: ", card.crm.crm_id ?? "—"),
      h("dl", { class: "values" }, Object.entries(card.crm.data).flatMap(([k, vs]) => [h("dt", {}, k), h("dd", {}, vs.join(", "))]))) : "",
    card.tags.length ? section("Tags", h("p", {}, card.tags.map((t) => [h("span", { class: "badge" }, t), " "]))) : "",
    card.comments.length ? section("Comments", h("ul", { class: "plain" }, card.comments.map(comment))) : "",
    section("Merges", mergeList(card, merges.merges)),
    section("Timeline",
      h("div", { class: "scroll" }, h("table", {},
        h("thead", {}, h("tr", {}, ["Appeal", "Channel", "Status", "Opened", "Messages"].map((c) => h("th", { scope: "col" }, c)))),
        rows)),
      more));
  $("view").replaceChildren(view);
  if (focus) {
    $("card-title").focus();
    const ids = new Set([card.id, ...card.absorbed_ids]);
    // An open merge preview is not drawn away: its confirm answers for the card's changes.
    const about = (e) => ids.has(e.client?.id) || e.absorbed_ids?.some((a) => ids.has(a));
    follow((e) => about(e) && !$("preview"), () => showCard(card.id, false).catch(fail));
  }
}

function technical(t) {
  const rows = t.visitors.map((v) => h("tr", {},
    h("td", {}, v.channel_id, h("br"), h("span", { class: "muted" }, v.channel_kind ?? "")),
    h("td", { class: "ids" }, v.visitor_id),
    h("td", {}, replyWindow(v), v.last_client_message_at ? [h("br"), h("span", { class: "muted" }, "last wrote ", time(v.last_client_message_at))] : "")));
  return [
    h("div", { class: "scroll" }, h("table", {},
      h("thead", {}, h("tr", {}, ["Channel", "Visitor", "Reply window"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows))),
    t.external_ids.length ? h("p", {}, "External ids: ", h("span", { class: "ids" }, t.external_ids.join(", "))) : "",
  ];
}

function comment(c) {
  return h("li", {}, c.text, " ", h("span", { class: "muted" }, "— ", c.operator_id ?? "operator", ", ", time(c.at)));
}

/** Splits a merge and says what went back, what stayed and which later merges may want the
 *  same (the `client.split` event, read from the feed from just before the command). */
async function splitWithReport(card, mergeId) {
  let from = null;
  try { from = (await api("/feed?topic=events&after=end")).next; } catch { /* no report, the split still goes */ }
  const answer = await act("Split", card, { type: "split_client", client: { client_id: card.id }, merge_id: mergeId });
  const ref = answer.status === 200 && answer.body.events?.find((e) => e.type === "client.split");
  if (!ref || from === null) return;
  let split;
  try {
    const page = await api(`/feed?topic=events&after=${encodeURIComponent(from)}&limit=1000`);
    split = page.records.map((r) => r.value).find((e) => e.event_id === ref.event_id);
  } catch { return; }
  if (!split) return;
  const moved = split.moved.map((m) =>
    `card ${m.client_id} got back ${m.visitors} visitor${m.visitors === 1 ? "" : "s"}, ${m.appeals} appeal${m.appeals === 1 ? "" : "s"} and ${m.values} value${m.values === 1 ? "" : "s"}`);
  const kept = split.kept.map((k) => `${k.field} ${shown(k.field, k.value)}`);
  $("outcome").replaceChildren(
    h("span", {}, "Split: done. ", moved.join("; "), "."),
    kept.length ? h("span", {}, ` Kept with this card (changed by operators since the merge): ${kept.join(", ")}.`) : "",
    split.dependent_merges.length
      ? h("span", {}, ` Later merges that matched on what went back: `, h("span", { class: "ids" }, split.dependent_merges.join(", ")), " (split them too if they were wrong).")
      : "");
}

function mergeList(card, merges) {
  const absorbed = card.absorbed_ids;
  const items = merges.map((m) => {
    const how = m.by === "rule"
      ? `joined by rule ${m.rule_id ?? ""} on ${m.matched.map((v) => shown(v.field, v.value)).join(", ")}`
      : `joined by ${m.by}${m.operator ? ` (${m.operator})` : ""}`;
    const split = m.split
      ? h("span", { class: "badge" }, "split by ", m.split.operator, ", ", time(m.split.at))
      : m.splittable
        ? h("button", { type: "button", class: "small secondary", "data-merge": m.merge_id,
            onclick: () => splitWithReport(card, m.merge_id) }, "Split")
        : "";
    return h("li", {}, time(m.at), ": ", how, " ", split, h("br"),
      h("span", { class: "muted" }, "absorbed ", h("span", { class: "ids" }, m.absorbed_ids.join(", "))));
  });
  return [
    items.length ? h("ul", { class: "plain", id: "merges" }, items) : h("p", { class: "muted" }, "This card was never joined with another."),
    absorbed.length ? h("p", {}, "Absorbed ids: ", h("span", { class: "ids" }, absorbed.join(", "))) : "",
    card.blocked_merges.length ? h("p", {}, "Kept apart from: ", h("span", { class: "ids" }, card.blocked_merges.join(", "))) : "",
  ];
}

function timelineRow(a) {
  return h("tr", {},
    h("td", {}, h("button", { type: "button", class: "link", "data-appeal": a.number, onclick: () => go(`#/appeals/${a.number}`) }, `#${a.number}`)),
    h("td", {}, a.channel_id, a.group ? h("span", { class: "muted" }, ` · ${a.group}`) : ""),
    h("td", {}, h("span", { class: `badge ${a.status === "open" ? "open" : ""}` }, a.status)),
    h("td", {}, time(a.opened_at)),
    h("td", {}, String(a.message_count)));
}

/** The appeal's actions: each a command of the write API about this appeal. */
function appealActions(appeal) {
  const n = appeal.number;
  const run = (label, cmd) => actThen(label, appeal.client.revision, { appeal_number: n, ...cmd }, () => showAppeal(n, false));
  const scope = { name: "scope", label: "About", options: ["session", "dialogue"] };
  return h("div", { class: "actions" },
    appeal.status === "open"
      ? h("form", { class: "action", id: "close", novalidate: true, onsubmit: (e) => { e.preventDefault(); run("Close", { type: "close_appeal" }); } },
        h("button", { type: "submit" }, "Close"))
      : "",
    actionForm("assign", "Assign", [{ name: "group", label: "Group", optional: true }, { name: "operator_id", label: "Operator", optional: true }],
      ({ group, operator_id }) => run("Assign", { type: "assign_appeal", group: group.trim() || undefined, operator_id: operator_id.trim() || undefined })),
    actionForm("category", "Category", [{ name: "category", label: "Category" }],
      ({ category }) => run("Category", { type: "set_category", category })),
    actionForm("appeal-tag", "Tag", [{ name: "tag", label: "Tag" }, scope],
      ({ tag, scope }) => run("Tag", { type: "tag_appeal", tag, scope })),
    actionForm("appeal-comment", "Comment", [{ name: "text", label: "Comment", multiline: true }, scope],
      ({ text, scope }) => run("Comment", { type: "comment_appeal", text, scope })),
    actionForm("identify", "Identify", [
      { name: "identifier", label: "Identify by", options: ["phone", "email", "crm_id"] },
      { name: "value", label: "Value" }],
    ({ identifier, value }) => run("Identify", { type: "identify_client", identifier, value })),
    actionForm("scenario", "Start scenario", [{ name: "scenario_id", label: "Scenario id" }],
      ({ scenario_id }) => run("Start scenario", { type: "start_scenario", scenario_id })));
}

async function showAppeal(number, focus = true) {
  if (focus) $("outcome").hidden = true;
  let appeal = await api(`/appeals/${encodeURIComponent(number)}`);
  const messages = [...appeal.messages];
  while (appeal.next) { // an appeal is read whole: the chat shows every message
    appeal = await api(`/appeals/${encodeURIComponent(number)}?after=${encodeURIComponent(appeal.next)}`);
    messages.push(...appeal.messages);
  }
  const view = h("article", { "aria-labelledby": "appeal-title", id: "appeal", "data-revision": appeal.client.revision },
    h("p", {}, h("button", { type: "button", class: "link", onclick: () => go(`#/clients/${encodeURIComponent(appeal.client.id)}`) },
      `← ${appeal.client.name ?? "client"}'s card`)),
    h("div", { class: "card-head" },
      h("h2", { id: "appeal-title", tabindex: "-1" }, `Appeal #${appeal.number}`),
      h("span", { class: `badge ${appeal.status === "open" ? "open" : ""}` }, appeal.status),
      h("span", { class: "muted" }, `${appeal.channel_id}${appeal.group ? ` · ${appeal.group}` : ""}${appeal.operator_id ? ` · ${appeal.operator_id}` : ""} · opened `, time(appeal.opened_at))),
    appeal.category ? h("p", {}, "Category: ", h("span", { class: "badge", id: "appeal-category" }, appeal.category)) : "",
    appeal.tags.length ? h("p", { id: "appeal-tags" }, appeal.tags.map((t) => [h("span", { class: "badge" }, t), " "])) : "",
    section("Actions", appealActions(appeal)),
    appeal.comments.length ? section("Comments", h("ul", { class: "plain", id: "appeal-comments" }, appeal.comments.map(comment))) : "",
    h("div", { class: "chat", role: "log", "aria-label": "Messages" }, chat(messages)));
  $("view").replaceChildren(view);
  if (focus) {
    $("appeal-title").focus();
    follow((e) => e.appeal?.number === appeal.number, () => showAppeal(appeal.number, false).catch(fail));
  }
}

const STATUS_MARK = { sent: "✓ sent", delivered: "✓✓ delivered", read: "✓✓ read" };

/** Messages as a chat: one bubble per author while they write within a minute of their last
 *  message; system messages (and operator-only notes) stand apart. */
function chat(messages) {
  const out = [];
  let group = null;
  for (const m of messages) {
    if (m.author_kind === "system" || !m.visible_to_client) {
      group = null;
      out.push(h("div", { class: `system ${m.visible_to_client ? "" : "internal"}` },
        m.visible_to_client ? "" : h("strong", {}, "Operators only: "), body(m), " ", time(m.sent_at, clock)));
      continue;
    }
    const at = Date.parse(m.sent_at);
    if (!group || group.kind !== m.author_kind || group.author !== m.author || at - group.last > 60_000) {
      const who = m.author_kind === "client" ? `Client${m.author ? ` (${m.author})` : ""}` : `${m.author_kind === "bot" ? "Bot" : "Operator"} ${m.author ?? ""}`;
      group = { kind: m.author_kind, author: m.author, last: at, el: h("div", { class: `group ${m.author_kind}` }, h("div", { class: "who" }, who)) };
      out.push(group.el);
    }
    group.last = at;
    group.el.append(h("p", {}, body(m), " ", time(m.sent_at, clock), m.status ? h("span", { class: "status" }, STATUS_MARK[m.status] ?? m.status) : ""));
  }
  return out;
}

function body(m) {
  const parts = [];
  if (m.text) parts.push(m.text);
  if (m.attachment) {
    const name = m.attachment.file_name ?? `${m.kind} attachment`;
    parts.push(parts.length ? " " : "", safeLink(m.attachment.url, `Attachment: ${name}`));
  }
  if (!parts.length) parts.push(h("span", { class: "muted" }, `(${m.kind})`));
  return parts;
}

// --- the scenario report (seed 004) --------------------------------------------------------

/** Each bot scenario drawn as its blocks, from the start block along their exits, with how many
 *  runs entered each; a block no run reached is greyed out. */
async function showScenarios() {
  following++; // nothing to follow here
  $("outcome").hidden = true;
  const { scenarios } = await api("/scenarios");
  const view = h("article", { "aria-labelledby": "report-title", id: "report" },
    h("h2", { id: "report-title", tabindex: "-1" }, "Scenario report"),
    scenarios.length ? scenarios.map(scenarioPicture) : h("p", { class: "muted" }, "The project has no bot scenarios."));
  $("view").replaceChildren(view);
  $("report-title").focus();
}

function scenarioPicture(s) {
  // Blocks in the order a run meets them (breadth-first from the start), then any others.
  const byId = new Map(s.blocks.map((b) => [b.block_id, b]));
  const order = [];
  const queue = [s.start];
  while (queue.length) {
    const id = queue.shift();
    if (!byId.has(id) || order.includes(id)) continue;
    order.push(id);
    queue.push(...byId.get(id).exits.map((e) => e.to));
  }
  s.blocks.forEach((b) => { if (!order.includes(b.block_id)) order.push(b.block_id); });
  const most = Math.max(1, ...s.blocks.map((b) => b.entries));
  const box = (b) => h("li", { class: `block ${b.entries ? "" : "unreached"}`, "data-block": b.block_id },
    h("div", { class: "block-head" }, h("span", { class: "badge" }, b.block_type), " ", h("strong", {}, b.block_id),
      b.block_id === s.start ? h("span", { class: "muted" }, " (start)") : ""),
    h("div", { class: "bar", style: undefined }, h("span", { class: "fill", "data-share": String(b.entries / most) })),
    h("div", {}, b.entries ? `${b.entries} run${b.entries === 1 ? "" : "s"} entered` : "never reached"),
    b.exits.length ? h("ul", { class: "exits" }, b.exits.map((e) => h("li", {}, `${e.exit} → ${e.to}`))) : "");
  const list = h("ol", { class: "flow" }, order.map((id) => box(byId.get(id))));
  // The bars' widths are set through the CSS object model: the policy allows no inline styles.
  list.querySelectorAll(".fill").forEach((f) => { f.style.width = `${Math.round(Number(f.dataset.share) * 100)}%`; });
  return h("section", { "aria-labelledby": `scenario-${s.scenario_id}` },
    h("h3", { id: `scenario-${s.scenario_id}` }, `Scenario ${s.scenario_id}`),
    list,
    s.retired.length ? h("p", { class: "muted" }, "No longer configured: ", s.retired.map((r) => `${r.block_id} (${r.entries})`).join(", ")) : "");
}

// --- live ---------------------------------------------------------------------------------

/** The open view follows the event feed: an event about its card or appeal draws it again
 *  (what the operator is typing is kept). One follower at a time; a new view replaces it. */
let following = 0;

function follow(matches, redraw) {
  const mine = ++following;
  (async () => {
    let after = "end";
    while (mine === following && session.token) {
      let page;
      try {
        page = await api(`/feed?topic=events&after=${encodeURIComponent(after)}&wait=25s&limit=1000`);
      } catch (e) {
        if (e.status === 410) { after = "end"; continue; }
        await new Promise((r) => setTimeout(r, 5000)); // the service restarting: try again
        continue;
      }
      after = page.next;
      if (mine === following && page.records.some((r) => matches(r.value))) await keepingInput(redraw);
    }
  })();
}

/** Runs `redraw`, then puts back what was typed in the view's fields and where the focus was. */
async function keepingInput(redraw) {
  const typed = [...$("view").querySelectorAll("input[id], textarea[id], select[id]")].map((f) => [f.id, f.value]);
  const focused = document.activeElement?.id;
  await redraw();
  for (const [id, value] of typed) {
    const f = document.getElementById(id);
    if (f && !f.value) f.value = value;
  }
  if (focused) document.getElementById(focused)?.focus();
}

// --- start --------------------------------------------------------------------------------

$("login-form").addEventListener("submit", signIn);
$("sign-out").addEventListener("click", () => { session.clear(); location.hash = ""; showLogin(); });
$("search-input").addEventListener("input", onSearchInput);
$("search-input").addEventListener("keydown", onResultsKey);
$("results").addEventListener("keydown", onResultsKey);
window.addEventListener("hashchange", route);
$("create-client").append(createForm());
if (session.token) showWorkspace();
else showLogin();

// banger web UI: views routed on the hash (#/, #/vm/NAME, #/images,
// #/kernels, #/create), data from the UI's own /api (which calls bangerd),
// live updates from /api/events (the daemon's event stream). No inline
// scripts or styles: the Content-Security-Policy allows this origin only.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const HOUR_SECS = 3600;

// Element builder: attributes, `on*` listeners, `text`, and children.
function h(tag, attrs, ...children) {
  const svg = tag.startsWith("svg:");
  const el = svg ? document.createElementNS(SVG_NS, tag.slice(4)) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// Calls the UI's API; a failure throws an Error with the daemon's message.
async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch("/api" + path, init);
  const text = await response.text();
  if (!response.ok) {
    let message = text;
    try { message = JSON.parse(text).message || text; } catch (_) { /* plain text */ }
    throw new Error(message.trim() || response.status + " " + response.statusText);
  }
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? JSON.parse(text) : text;
}

function showError(error) {
  const box = document.getElementById("error");
  if (!error) { box.hidden = true; box.textContent = ""; return; }
  box.textContent = error.message || String(error);
  box.hidden = false;
}

function bytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

function stateBadge(state) {
  return h("span", { class: "state state-" + state, "data-state": state, text: state });
}

// Which actions a state allows (banger_api::vms::VmState's rules).
const CAN = {
  start: (s) => ["created", "stopped", "error"].includes(s),
  stop: (s) => ["running", "starting", "paused", "error"].includes(s),
  restart: (s) => s === "running",
  pause: (s) => s === "running",
  resume: (s) => s === "paused",
};

// What the views share: VMs by name, the newest stats per VM, and the
// view to redraw when something changes.
const store = { vms: new Map(), lastStats: new Map(), view: null, pending: new Set() };

async function loadVms() {
  const vms = await api("GET", "/vms");
  store.vms = new Map(vms.map((vm) => [vm.name, vm]));
}

async function act(name, action) {
  if (action === "delete" && !window.confirm("Delete VM " + name + " and its disks?")) return;
  store.pending.add(name);
  redraw();
  try {
    showError(null);
    if (action === "delete") {
      await api("DELETE", "/vms/" + encodeURIComponent(name));
      store.vms.delete(name);
      if (location.hash.startsWith("#/vm/")) location.hash = "#/";
    } else {
      const vm = await api("POST", "/vms/" + encodeURIComponent(name) + "/" + action);
      store.vms.set(vm.name, vm);
    }
  } catch (error) {
    showError(error);
  } finally {
    store.pending.delete(name);
    redraw();
  }
}

function actionButtons(vm, all) {
  const busy = store.pending.has(vm.name);
  const names = all ? ["start", "stop", "restart", "pause", "resume"] : ["start", "stop"];
  const buttons = names.map((action) => h("button", {
    "data-action": action,
    disabled: busy || !CAN[action](vm.state),
    onclick: () => act(vm.name, action),
    text: action[0].toUpperCase() + action.slice(1),
  }));
  if (all) {
    buttons.push(h("button", {
      class: "danger", "data-action": "delete", disabled: busy,
      onclick: () => act(vm.name, "delete"), text: "Delete",
    }));
  }
  return h("div", { class: "actions" }, buttons);
}

// ---- views -------------------------------------------------------------

function cpuText(stats) {
  const cpu = stats && stats.host.vmm_cpu_percent;
  return cpu === null || cpu === undefined ? "–" : cpu.toFixed(1) + " %";
}

const listView = {
  showsVms: true,
  async load() { await loadVms(); },
  // A sample changes one cell: the rest of the table (and the buttons a
  // user may be clicking) stays as it is.
  stats(sample) {
    const row = [...document.querySelectorAll("#vms tr[data-vm]")].find((tr) => tr.dataset.vm === sample.vm);
    const cell = row && row.querySelector("td.cpu");
    if (cell) cell.textContent = cpuText(sample);
  },
  render() {
    const vms = [...store.vms.values()].sort((a, b) => a.name.localeCompare(b.name));
    if (vms.length === 0) {
      return [h("h1", { text: "VMs" }),
        h("div", { class: "empty" }, "No VMs yet. ", h("a", { href: "#/create", text: "Create one" }), ".")];
    }
    const rows = vms.map((vm) => {
      const cpu = cpuText(store.lastStats.get(vm.name));
      return h("tr", { "data-vm": vm.name },
        h("td", {}, h("a", { href: "#/vm/" + encodeURIComponent(vm.name), text: vm.name })),
        h("td", {}, stateBadge(vm.state)),
        h("td", { text: vm.image || "–" }),
        h("td", { class: "num", text: vm.vcpus }),
        h("td", { class: "num", text: bytes(vm.memory_mib * 1024 * 1024) }),
        h("td", { text: vm.ip }),
        h("td", { class: "num cpu", text: cpu }),
        h("td", {}, actionButtons(vm, false)));
    });
    return [h("h1", { text: "VMs" }),
      h("table", { id: "vms" },
        h("thead", {}, h("tr", {}, ["Name", "State", "Image", "vCPU", "Memory", "IP", "CPU", ""].map(
          (title, i) => h("th", { class: [3, 4, 6].includes(i) ? "num" : null, text: title })))),
        h("tbody", {}, rows))];
  },
};

// A line chart of `points` ([unix secs, value]) over the last hour.
function chart(points, max, format) {
  const width = 600, height = 120;
  const now = Date.now() / 1000;
  const top = Math.max(max, ...points.map((p) => p[1]), 1e-9);
  const coords = points
    .filter((p) => p[1] !== null && p[1] !== undefined)
    .map((p) => [((p[0] - (now - HOUR_SECS)) / HOUR_SECS) * width, height - (p[1] / top) * (height - 8)]);
  const svg = h("svg:svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none" },
    [0.25, 0.5, 0.75].map((f) => h("svg:line", {
      x1: 0, x2: width, y1: height * f, y2: height * f, stroke: "#e2e8f0", "stroke-width": 1,
    })));
  if (coords.length > 0) {
    svg.append(h("svg:polyline", {
      points: coords.map((c) => c[0].toFixed(1) + "," + c[1].toFixed(1)).join(" "),
      fill: "none", stroke: "#2b6cb0", "stroke-width": 2, "vector-effect": "non-scaling-stroke",
    }));
  }
  const last = points.length ? points[points.length - 1][1] : null;
  return [svg, h("div", { class: "chart-label" },
    h("span", { text: "last hour" }),
    h("span", { text: last === null || last === undefined ? "no samples yet" : "now " + format(last) + " · peak " + format(top) }))];
}

function vmView(name) {
  const data = { history: [], ports: null, console: "", sessions: [], logs: new Map() };
  const view = {
    name,
    data,
    showsVms: true,
    async load() {
      const [vm, history] = await Promise.all([
        api("GET", "/vms/" + encodeURIComponent(name)),
        api("GET", "/vms/" + encodeURIComponent(name) + "/stats"),
      ]);
      store.vms.set(vm.name, vm);
      data.history = history;
      await view.loadDetails();
    },
    async loadDetails() {
      const path = "/vms/" + encodeURIComponent(name);
      const vm = store.vms.get(name);
      const running = vm && vm.state === "running";
      const results = await Promise.allSettled([
        running ? api("GET", path + "/ports") : Promise.resolve(null),
        api("GET", path + "/console"),
        running ? api("GET", path + "/sessions") : Promise.resolve([]),
      ]);
      data.ports = results[0].status === "fulfilled" ? results[0].value : null;
      data.console = results[1].status === "fulfilled" ? results[1].value : "";
      data.sessions = results[2].status === "fulfilled" ? results[2].value : [];
    },
    stats(sample) {
      if (sample.vm !== name) return;
      data.history.push(sample);
      const oldest = sample.sampled_at - HOUR_SECS;
      while (data.history.length && data.history[0].sampled_at < oldest) data.history.shift();
      // Only the charts change: buttons and text stay put.
      const charts = document.getElementById("charts");
      const vm = store.vms.get(name);
      if (charts && vm) charts.replaceChildren(...view.charts(vm));
    },
    charts(vm) {
      const cpu = data.history.map((s) => [s.sampled_at, s.host.vmm_cpu_percent]);
      const memory = data.history.map((s) => [s.sampled_at,
        s.guest ? s.guest.mem_total_bytes - s.guest.mem_available_bytes : s.host.vmm_rss_bytes]);
      return [h("h2", { text: "CPU (VMM, % of one core)" }),
        chart(cpu, 100, (v) => v.toFixed(1) + " %"),
        h("h2", { text: "Memory" }), chart(memory, vm.memory_mib * 1024 * 1024, bytes)].flat();
    },
    render() {
      const vm = store.vms.get(name);
      if (!vm) return [h("h1", { text: name }), h("div", { class: "empty", text: "No such VM (it may have been deleted)." })];
      const memTop = vm.memory_mib * 1024 * 1024;
      const ports = data.ports ? data.ports.ports : [];
      return [
        h("h1", { id: "vm-title", "data-vm": vm.name }, vm.name, stateBadge(vm.state)),
        actionButtons(vm, true),
        h("div", { class: "cards" },
          h("section", { class: "card" }, h("h2", { text: "Details" }), h("dl", {}, [
            ["Image", vm.image || "–"], ["vCPUs", vm.vcpus], ["Memory", bytes(memTop)],
            ["Disk", bytes(vm.disk_bytes)], ["IP", vm.ip], ["SSH", vm.ssh.host_alias],
            ["Backend", vm.backend || "–"], ["PID", vm.pid || "–"], ["NAT", vm.nat ? "on" : "off"],
            ["Last error", vm.last_error || "–", "last-error"],
          ].map(([k, v, id]) => [h("dt", { text: k }), h("dd", { id, text: v })]))),
          h("section", { class: "card", id: "charts" }, view.charts(vm)),
        ),
        h("h2", { text: "Ports" }),
        ports.length === 0
          ? h("p", { class: "muted", text: vm.state === "running" ? "No listening ports." : "The VM is not running." })
          : h("table", { id: "ports" }, h("thead", {}, h("tr", {}, ["Endpoint", "Protocol", "Bound to", "Process"].map((t) => h("th", { text: t })))),
            h("tbody", {}, ports.map((port) => {
              const endpoint = vm.name + ".vm:" + port.port;
              return h("tr", {},
                h("td", {}, port.url
                  ? h("a", { href: "http://" + endpoint + "/", target: "_blank", rel: "noopener noreferrer", text: "http://" + endpoint + "/" })
                  : endpoint),
                h("td", { text: port.protocol }),
                h("td", { text: port.bind_address }),
                h("td", { text: port.guest_process ? port.guest_process.command : "–" }));
            }))),
        h("h2", {}, "Sessions"),
        data.sessions.length === 0 ? h("p", { class: "muted", text: "No sessions." })
          : h("table", { id: "sessions" }, h("thead", {}, h("tr", {}, ["Name", "State", "Command", ""].map((t) => h("th", { text: t })))),
            h("tbody", {}, data.sessions.map((session) => h("tr", {},
              h("td", { text: session.name }), h("td", { text: session.state }),
              h("td", { text: session.command.join(" ") }),
              h("td", {}, h("button", { text: "Logs", onclick: () => view.showLogs(session.name) })))))),
        [...data.logs.entries()].map(([session, logs]) => h("div", {},
          h("h2", { text: "Logs of " + session }), h("pre", { text: (logs.stdout + logs.stderr) || "(empty)" }))),
        h("h2", {}, "Console ", h("button", { text: "Refresh", onclick: () => view.loadDetails().then(redraw, showError) })),
        h("pre", { id: "console", text: data.console || "(empty)" }),
      ];
    },
    async showLogs(session) {
      try {
        const logs = await api("GET", "/vms/" + encodeURIComponent(name) + "/sessions/" + encodeURIComponent(session) + "/logs");
        data.logs.set(session, logs);
        redraw();
      } catch (error) { showError(error); }
    },
  };
  return view;
}

function tableView(title, path, columns) {
  let rows = [];
  return {
    async load() { rows = await api("GET", path); },
    render() {
      if (rows.length === 0) return [h("h1", { text: title }), h("div", { class: "empty", text: "None yet." })];
      return [h("h1", { text: title }), h("table", {},
        h("thead", {}, h("tr", {}, columns.map(([t]) => h("th", { text: t })))),
        h("tbody", {}, rows.map((row) => h("tr", {}, columns.map(([, f]) => h("td", { text: f(row) }))))))];
    },
  };
}

const imagesView = () => tableView("Images", "/images", [
  ["Name", (i) => i.name], ["Kernel", (i) => i.kernel], ["Size", (i) => bytes(i.size_bytes)],
  ["Managed", (i) => (i.managed ? "yes" : "no")], ["Source", (i) => (i.oci ? "OCI" : i.provision ? "built" : "registered")],
  ["Used by", (i) => i.used_by_vms.join(", ") || "–"],
]);

const kernelsView = () => tableView("Kernels", "/kernels", [
  ["Name", (k) => k.name], ["Version", (k) => k.version], ["Source", (k) => k.source], ["Size", (k) => bytes(k.size_bytes)],
]);

function createView() {
  let images = [];
  const progress = { stage: "", message: "", fraction: null, running: false };
  const view = {
    keepsInput: true,
    async load() { images = await api("GET", "/images"); },
    render() {
      const field = (label, input) => [h("label", { for: input.id, text: label }), input];
      const form = h("form", { class: "create", id: "create-form", onsubmit: (e) => { e.preventDefault(); view.submit(form); } },
        field("Name", h("input", { id: "f-name", name: "name", placeholder: "picked for you", pattern: "[a-z][a-z0-9-]*" })),
        field("Image", h("select", { id: "f-image", name: "image" },
          h("option", { value: "", text: "default image" }),
          images.map((i) => h("option", { value: i.name, text: i.name })))),
        field("vCPUs", h("input", { id: "f-vcpus", name: "vcpus", type: "number", min: 1, max: 32, placeholder: "default" })),
        field("Memory (MiB)", h("input", { id: "f-memory", name: "memory", type: "number", min: 128, step: 128, placeholder: "default" })),
        field("Disk (GiB)", h("input", { id: "f-disk", name: "disk", type: "number", min: 1, placeholder: "default" })),
        field("NAT (internet)", h("input", { id: "f-nat", name: "nat", type: "checkbox" })),
        h("span"), h("button", { class: "primary", type: "submit", disabled: progress.running, text: "Create and start" }));
      const status = progress.running || progress.message
        ? h("div", { class: "progress", id: "create-progress" },
          progress.fraction === null ? h("progress") : h("progress", { max: 1, value: progress.fraction }),
          h("div", { text: (progress.stage ? progress.stage + ": " : "") + progress.message }))
        : null;
      return [h("h1", { text: "New VM" }), form, status];
    },
    async submit(form) {
      const value = (name) => form.elements[name].value.trim();
      const number = (name) => (value(name) === "" ? undefined : Number(value(name)));
      const request = { nat: form.elements.nat.checked };
      if (value("name")) request.name = value("name");
      if (value("image")) request.image = value("image");
      if (number("vcpus") !== undefined) request.vcpus = number("vcpus");
      if (number("memory") !== undefined) request.memory_mib = number("memory");
      if (number("disk") !== undefined) request.disk_bytes = number("disk") * 1024 * 1024 * 1024;
      Object.assign(progress, { stage: "", message: "Sending…", fraction: null, running: true });
      showError(null);
      redraw();
      try {
        const vm = await createStream(request, (p) => {
          Object.assign(progress, { stage: p.stage, message: p.message, fraction: p.fraction ?? null });
          redraw();
        });
        store.vms.set(vm.name, vm);
        location.hash = "#/vm/" + encodeURIComponent(vm.name);
      } catch (error) {
        showError(error);
      } finally {
        progress.running = false;
        progress.message = "";
        if (store.view === view) redraw();
      }
    },
  };
  return view;
}

// POSTs a create request and reads its NDJSON progress to the end.
async function createStream(request, onProgress) {
  const response = await fetch("/api/vms", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request),
  });
  if (!response.ok) {
    const text = await response.text();
    let message = text;
    try { message = JSON.parse(text).message || text; } catch (_) { /* plain text */ }
    throw new Error(message.trim());
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (value) buffer += decoder.decode(value, { stream: true });
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      if (!line.trim()) continue;
      const event = JSON.parse(line);
      if (event.event === "progress") onProgress(event);
      else if (event.event === "done") return event.result;
      else if (event.event === "failed") throw new Error(event.error.message);
    }
    if (done) throw new Error("bangerd ended the create stream without a result; see `banger vm list`");
  }
}

// ---- routing and live updates ------------------------------------------

function route() {
  const hash = location.hash || "#/";
  if (hash.startsWith("#/vm/")) return ["vms", vmView(decodeURIComponent(hash.slice(5)))];
  if (hash === "#/images") return ["images", imagesView()];
  if (hash === "#/kernels") return ["kernels", kernelsView()];
  if (hash === "#/create") return ["create", createView()];
  return ["vms", listView];
}

function redraw() {
  if (!store.view) return;
  const main = document.getElementById("main");
  main.replaceChildren(...[store.view.render()].flat(Infinity).filter(Boolean));
}

async function navigate() {
  const [nav, view] = route();
  store.view = view;
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.nav === nav);
  }
  try {
    await view.load();
    if (store.view === view) { showError(null); redraw(); }
  } catch (error) {
    showError(error);
  }
}

// Re-reads what the current view shows (after a reconnect or a resync).
async function reload() {
  const view = store.view;
  // The create form is not rebuilt under a user's typing.
  if (!view || view.keepsInput) return;
  try {
    await view.load();
    if (store.view === view) redraw();
  } catch (error) { showError(error); }
}

function onEvent(message) {
  let data;
  try { data = JSON.parse(message.data); } catch (_) { return; }
  const event = data.event || {};
  const view = store.view;
  switch (event.type) {
    case "vm_state": {
      const vm = store.vms.get(event.vm);
      if (vm) { vm.state = event.to; if (event.reason) vm.last_error = event.reason; }
      if (view && view.name === event.vm && (event.to === "running" || event.to === "stopped")) {
        view.load().then(redraw, showError);
      } else if (!vm) { reload(); return; }
      if (view && view.showsVms) redraw();
      break;
    }
    case "vm_health": {
      const vm = store.vms.get(event.vm);
      if (vm) vm.last_error = event.warning || null;
      if (view && view.showsVms) redraw();
      break;
    }
    case "vm_created":
    case "vm_deleted":
      if (event.type === "vm_deleted") store.vms.delete(event.vm);
      if (view && view.showsVms) reload();
      break;
    case "stats":
      store.lastStats.set(event.vm, event.stats);
      if (view && view.stats) view.stats(event.stats);
      break;
    case "resync":
      reload();
      break;
    default:
      // Kinds this page does not know (progress, sessions, ...) are ignored.
      break;
  }
}

function follow() {
  const live = document.getElementById("live");
  const source = new EventSource("/api/events");
  source.addEventListener("open", () => {
    live.textContent = "live";
    live.classList.remove("off");
    reload();
  });
  source.addEventListener("error", () => {
    // EventSource reconnects by itself; the open handler re-reads then.
    live.textContent = "offline";
    live.classList.add("off");
  });
  source.addEventListener("message", onEvent);
}

window.addEventListener("hashchange", navigate);
window.addEventListener("DOMContentLoaded", () => {
  navigate();
  follow();
});

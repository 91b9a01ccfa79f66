#!/usr/bin/env node
// invariants.mjs — checks that what deploy/ ships keeps the Kubernetes invariant of
// docs/lifecycle.md and the rules of the `rollsafe lint` catalogue (RS001–RS010), on kustomize
// renders and the Kong files together. Once `rollsafe lint` exists, it is the reference; this
// keeps the shipped files honest meanwhile and checks the *rendered* overlays, which the lint
// (reading files as they are) does not see.
//
//   node invariants.mjs FILE...     multi-document YAML: Kubernetes objects, Kong declarative
//                                   files (recognized by _format_version)
//   node invariants.mjs --self-test breaks a good render in several ways; each must be caught
// Exit 0 when everything holds, 1 otherwise, 2 usage.

import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

const DEFAULTS = {
  "drain-delay": "5s",
  "shutdown-timeout": "25s",
  "idle-timeout": "75s",
  "max-work-ms": "600000",
  "admin-listen": "0.0.0.0:9090",
};
const GATEWAY_KEEPALIVE_S = 60; // nginx and Kong upstream keep-alive default
const MARGIN_S = 5;

export function parseDuration(text) {
  const s = String(text).trim();
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  const unit = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };
  let total = 0;
  let end = 0;
  for (let m; (m = re.exec(s)); end = re.lastIndex) total += Number(m[1]) * unit[m[2]];
  if (end === 0 || end !== s.length) throw new Error(`bad duration "${text}"`);
  return total;
}

// --flag value / --flag=value in command+args, then env ROLLSAFE_FLAG (literal values), then default.
function flag(container, name) {
  const argv = [...(container.command ?? []), ...(container.args ?? [])].map(String);
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === `--${name}` && i + 1 < argv.length) return argv[i + 1];
    if (argv[i].startsWith(`--${name}=`)) return argv[i].slice(name.length + 3);
  }
  const envName = `ROLLSAFE_${name.toUpperCase().replaceAll("-", "_")}`;
  const env = (container.env ?? []).find((e) => e.name === envName && e.value !== undefined);
  return env ? env.value : DEFAULTS[name];
}

function isRollsafe(c) {
  const argv = [...(c.command ?? []), ...(c.args ?? [])].map(String);
  return String(c.image ?? "").includes("rollsafe") || argv.includes("serve");
}

function portNumber(container, port) {
  if (typeof port === "number") return port;
  const p = (container.ports ?? []).find((x) => x.name === port);
  return p ? p.containerPort : NaN;
}

function subset(a = {}, b = {}) {
  return Object.keys(a).length > 0 && Object.entries(a).every(([k, v]) => b[k] === v);
}

function checkDeployment(d, objects, problems, ctx) {
  const where = `Deployment/${d.metadata?.name}`;
  const bad = (msg) => problems.push(`${where}: ${msg}`);
  const spec = d.spec ?? {};
  const pod = spec.template?.spec ?? {};
  const podLabels = spec.template?.metadata?.labels ?? {};
  const containers = (pod.containers ?? []).filter(isRollsafe);
  if (containers.length === 0) return;
  const c = containers[0];

  // RS005
  if ((spec.replicas ?? 1) < 2) bad(`RS005 replicas ${spec.replicas ?? "(default 1)"} < 2`);
  // RS004: maxUnavailable 0 AND a PDB (we ship both)
  const ru = spec.strategy?.rollingUpdate ?? {};
  if (spec.strategy?.type !== "RollingUpdate") bad("strategy is not RollingUpdate");
  if (!(ru.maxUnavailable === 0 || ru.maxUnavailable === "0%")) bad(`RS004 maxUnavailable ${ru.maxUnavailable} != 0`);
  if (!(ru.maxSurge === 1 || (typeof ru.maxSurge === "number" && ru.maxSurge >= 1))) bad(`maxSurge ${ru.maxSurge} < 1`);
  const pdbs = objects.filter((o) => o.kind === "PodDisruptionBudget" && subset(o.spec?.selector?.matchLabels, podLabels));
  if (pdbs.length === 0) bad("RS004 no PodDisruptionBudget selects the pod labels");

  const drain = parseDuration(flag(c, "drain-delay"));
  const shutdown = parseDuration(flag(c, "shutdown-timeout"));
  const idle = parseDuration(flag(c, "idle-timeout"));
  ctx.idle = idle;
  ctx.longestRequestS = Math.max(Number(flag(c, "max-work-ms")) / 1000, drain + shutdown);
  const adminPort = Number(String(flag(c, "admin-listen")).split(":").pop());

  // RS003 + preStop on the admin port
  const pre = c.lifecycle?.preStop;
  let preWait = 0;
  if (!pre) bad("RS003 no preStop hook");
  else if (pre.httpGet) {
    if (pre.httpGet.path !== "/lifecycle/prestop") bad(`preStop httpGet path ${pre.httpGet.path}`);
    if (portNumber(c, pre.httpGet.port) !== adminPort) bad(`preStop httpGet port ${pre.httpGet.port} is not the admin port ${adminPort}`);
  } else if (pre.sleep) preWait = pre.sleep.seconds;
  else bad("preStop is neither httpGet /lifecycle/prestop nor sleep");
  // RS001
  const grace = pod.terminationGracePeriodSeconds ?? 30;
  const need = preWait + drain + shutdown + MARGIN_S;
  if (grace < need) bad(`RS001 terminationGracePeriodSeconds ${grace} < ${preWait} + ${drain} + ${shutdown} + ${MARGIN_S} = ${need}`);
  // RS002
  const rp = c.readinessProbe;
  if (!rp) bad("RS002 no readinessProbe");
  else {
    const window = (rp.periodSeconds ?? 10) * (rp.failureThreshold ?? 3);
    if (!(window < drain)) bad(`RS002 readiness ${rp.periodSeconds ?? 10} x ${rp.failureThreshold ?? 3} = ${window} s >= drain delay ${drain} s`);
    if (rp.httpGet?.path !== "/readyz" || portNumber(c, rp.httpGet?.port) !== adminPort) bad("readinessProbe is not /readyz on the admin port");
  }
  // RS010
  if (c.livenessProbe?.httpGet?.path !== "/livez") bad("RS010 livenessProbe is not /livez");
  if (!c.startupProbe) bad("RS010 no startupProbe");
  // keep-alive order (RS006, the service side)
  if (!(idle > GATEWAY_KEEPALIVE_S)) bad(`RS006 --idle-timeout ${idle} s is not above the gateways' ${GATEWAY_KEEPALIVE_S} s keep-alive`);
  // hardening
  const sc = c.securityContext ?? {};
  const psc = pod.securityContext ?? {};
  if (!(sc.runAsNonRoot ?? psc.runAsNonRoot)) bad("not runAsNonRoot");
  if (sc.readOnlyRootFilesystem !== true) bad("root filesystem not read-only");
  if (sc.allowPrivilegeEscalation !== false) bad("allowPrivilegeEscalation not false");
  if (!(sc.capabilities?.drop ?? []).includes("ALL")) bad("capabilities not dropped");
  if (pod.enableServiceLinks !== false) bad("enableServiceLinks not false (service env vars collide with ROLLSAFE_*)");
  // The admin port stays private: no Service selecting these pods exposes it.
  for (const s of objects.filter((o) => o.kind === "Service" && subset(o.spec?.selector, podLabels))) {
    for (const p of s.spec?.ports ?? []) {
      if (portNumber(c, p.targetPort ?? p.port) === adminPort) bad(`Service/${s.metadata?.name} exposes the admin port`);
    }
  }
}

function checkHealthchecks(hc, where, problems, camel) {
  const k = (snake) => (camel ? snake.replace(/_([a-z])/g, (_, ch) => ch.toUpperCase()) : snake);
  const bad = (msg) => problems.push(`${where}: ${msg}`);
  const active = hc?.active;
  const passive = hc?.passive;
  if (!active && !passive) return bad("RS009 no health checks");
  if (active?.[k("http_path")] !== "/readyz") bad("RS009 active health check does not probe /readyz");
  if (!(active?.healthy?.interval > 0 && active?.unhealthy?.interval > 0)) bad("active checks disabled (interval 0)");
  const statuses = passive?.unhealthy?.[k("http_statuses")] ?? [];
  if (!statuses.includes(503)) bad("passive checks do not count 503");
  for (const s of [409, 422]) if (statuses.includes(s)) bad(`passive checks count ${s} (a client/key answer, not a replica fault)`);
  if (!(passive?.unhealthy?.[k("tcp_failures")] > 0)) bad("passive checks ignore TCP failures");
}

function checkKong(cfg, file, problems, ctx) {
  for (const s of cfg.services ?? []) {
    const where = `${file}: service ${s.name}`;
    if ((s.retries ?? 5) > 0 && !(s.tags ?? []).includes("idempotency-keys")) problems.push(`${where}: RS007 retries without tag idempotency-keys`);
    if ((s.retries ?? 5) === 0) problems.push(`${where}: RS008 retries 0`);
    const readS = (s.read_timeout ?? 60000) / 1000;
    if (ctx.longestRequestS !== undefined && !(readS > ctx.longestRequestS)) {
      problems.push(`${where}: read_timeout ${readS} s not above the longest request ${ctx.longestRequestS} s`);
    }
  }
  for (const u of cfg.upstreams ?? []) checkHealthchecks(u.healthchecks, `${file}: upstream ${u.name}`, problems, false);
}

function checkKic(objects, problems, ctx) {
  for (const p of objects.filter((o) => o.kind === "KongUpstreamPolicy")) {
    checkHealthchecks(p.spec?.healthchecks, `KongUpstreamPolicy/${p.metadata?.name}`, problems, true);
  }
  for (const s of objects.filter((o) => o.kind === "Service" && o.metadata?.annotations?.["konghq.com/upstream-policy"])) {
    const a = s.metadata.annotations;
    const where = `Service/${s.metadata.name}`;
    if (!objects.some((o) => o.kind === "KongUpstreamPolicy" && o.metadata?.name === a["konghq.com/upstream-policy"])) {
      problems.push(`${where}: konghq.com/upstream-policy names no KongUpstreamPolicy here`);
    }
    const retries = Number(a["konghq.com/retries"] ?? 5);
    const tags = String(a["konghq.com/tags"] ?? "").split(",").map((t) => t.trim());
    if (retries > 0 && !tags.includes("idempotency-keys")) problems.push(`${where}: RS007 retries without tag idempotency-keys`);
    const readS = Number(a["konghq.com/read-timeout"] ?? 60000) / 1000;
    if (ctx.longestRequestS !== undefined && !(readS > ctx.longestRequestS)) {
      problems.push(`${where}: read-timeout ${readS} s not above the longest request ${ctx.longestRequestS} s`);
    }
  }
}

// Returns the list of problems for a set of {file, text}.
export function check(inputs) {
  const problems = [];
  const objects = [];
  const kong = [];
  for (const { file, text } of inputs) {
    for (const doc of parseAllDocuments(text)) {
      if (doc.errors?.length) {
        problems.push(`${file}: YAML: ${doc.errors[0].message.split("\n")[0]}`);
        continue;
      }
      const o = doc.toJS();
      if (!o || typeof o !== "object") continue;
      if (o._format_version !== undefined) kong.push({ file, cfg: o });
      else if (o.kind) objects.push(o);
    }
  }
  const ctx = {};
  const deployments = objects.filter((o) => o.kind === "Deployment");
  if (deployments.length === 0) problems.push("no Deployment in the input");
  for (const d of deployments) checkDeployment(d, objects, problems, ctx);
  for (const { file, cfg } of kong) checkKong(cfg, file, problems, ctx);
  checkKic(objects, problems, ctx);
  return problems;
}

function selfTest(files) {
  const inputs = files.map((file) => ({ file, text: readFileSync(file, "utf8") }));
  let failures = 0;
  const base = check(inputs);
  if (base.length) {
    console.log(`FAIL self-test: the inputs are not clean to start with:\n  ${base.join("\n  ")}`);
    return 1;
  }
  const cases = [
    ["grace period 30 s", /terminationGracePeriodSeconds: 35/, "terminationGracePeriodSeconds: 30", /RS001/],
    ["readiness 1 s x 6", /readinessProbe:\n(\s+)failureThreshold: 2/, "readinessProbe:\n$1failureThreshold: 6", /RS002 readiness 1 x 6/],
    ["maxUnavailable 1", /maxUnavailable: 0/, "maxUnavailable: 1", /RS004 maxUnavailable/],
    ["one replica", /replicas: \d+/, "replicas: 1", /RS005/],
    ["a drain delay of 1s", /- --drain-delay\n(\s+)- 5s/, "- --drain-delay\n$1- 1s", /RS002/],
    ["a shutdown timeout of 40s", /- --shutdown-timeout\n(\s+)- 25s/, "- --shutdown-timeout\n$1- 40s", /RS001/],
    ["liveness on /readyz", /path: \/livez\n(\s+)port: admin\n(\s+)periodSeconds: 10/, "path: /readyz\n$1port: admin\n$2periodSeconds: 10", /RS010/],
    ["Kong without the tag", /- idempotency-keys/, "- no-keys", /RS007/],
    ["passive checks on 409", /(\s+)http_statuses:\n(\s+)- 503\n(\s+)targets:/, "$1http_statuses:\n$2- 409\n$3targets:", /409/],
  ];
  for (const [what, from, to, expect] of cases) {
    let changed = false;
    const mutated = inputs.map(({ file, text }) => {
      if (changed || !from.test(text)) return { file, text };
      changed = true;
      return { file, text: text.replace(from, to) };
    });
    const problems = changed ? check(mutated) : [];
    if (!changed || !problems.some((p) => expect.test(p))) {
      failures++;
      console.log(`FAIL self-test: ${what} was not caught (${changed ? problems.join("; ") || "no problem" : "pattern not found"})`);
    } else {
      console.log(`ok   self-test: catches ${what}: ${problems.find((p) => expect.test(p))}`);
    }
  }
  console.log(failures ? `invariants self-test: FAIL (${failures})` : "invariants self-test: PASS");
  return failures ? 1 : 0;
}

function main(argv) {
  if (argv[0] === "--self-test" && argv.length > 1) return selfTest(argv.slice(1));
  if (argv.length === 0 || argv.some((a) => a.startsWith("--"))) {
    console.error("usage: node invariants.mjs FILE... | node invariants.mjs --self-test FILE...");
    return 2;
  }
  const problems = check(argv.map((file) => ({ file, text: readFileSync(file, "utf8") })));
  for (const p of problems) console.log(`FAIL ${p}`);
  console.log(problems.length ? `invariants: FAIL — ${problems.length} problem(s) in ${argv.join(" ")}` : `invariants: PASS — ${argv.join(" ")}`);
  return problems.length ? 1 : 0;
}

process.exitCode = main(process.argv.slice(2));

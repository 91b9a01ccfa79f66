#!/usr/bin/env node
// validate.mjs — offline validation of Kubernetes manifests against the Kubernetes OpenAPI schema
// (the npm package kubernetes-models), for the files under deploy/ and their kustomize renders.
//
//   node validate.mjs FILE...      multi-document YAML files; "-" reads stdin
//   node validate.mjs --self-test  proves the checks reject broken objects (and accept a good one)
//
// Two checks per object:
//   1. the model's validate(): types, required fields, enums (what kubernetes-models checks);
//   2. unknown fields: kubernetes-models' schemas allow any extra property, so a typo such as
//      `terminationGracePeriodSecond: 35` would pass check 1 and silently fall back to the default
//      in a cluster. The same compiled validator runs again on a Proxy that records every property
//      it reads; a property of the object that the schema never looked at is unknown (what
//      `kubectl apply --validate=strict` reports against a live API server).
// Kinds it has no schema for fail the run ("cannot check"), except Kong's CRDs
// (configuration.konghq.com), which are skipped with a note. Exit 0 all valid, 1 otherwise, 2 usage.

import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { Namespace } from "kubernetes-models/v1/Namespace";
import { PersistentVolumeClaim } from "kubernetes-models/v1/PersistentVolumeClaim";
import { Secret } from "kubernetes-models/v1/Secret";
import { Service } from "kubernetes-models/v1/Service";
import { ServiceAccount } from "kubernetes-models/v1/ServiceAccount";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { StatefulSet } from "kubernetes-models/apps/v1/StatefulSet";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler";
import { Ingress } from "kubernetes-models/networking.k8s.io/v1/Ingress";

const MODELS = new Map(
  [
    ConfigMap,
    Namespace,
    PersistentVolumeClaim,
    Secret,
    Service,
    ServiceAccount,
    Deployment,
    StatefulSet,
    PodDisruptionBudget,
    HorizontalPodAutoscaler,
    Ingress,
  ].map((m) => [`${m.apiVersion}/${m.kind}`, m]),
);
const SKIPPED_GROUPS = [/\.konghq\.com$/]; // Kong CRDs: no schema here; `rollsafe lint` checks them

// --- unknown fields -------------------------------------------------------------------------

// Wraps `value` so that every property read is recorded in reads: WeakMap<object, Set<key>>.
function tracked(value, reads, proxies) {
  if (value === null || typeof value !== "object") return value;
  if (proxies.has(value)) return proxies.get(value);
  reads.set(value, reads.get(value) ?? new Set());
  const seen = reads.get(value);
  const proxy = new Proxy(value, {
    get(target, key, receiver) {
      if (typeof key === "string") seen.add(key);
      return tracked(Reflect.get(target, key, receiver), reads, proxies);
    },
  });
  proxies.set(value, proxy);
  return proxy;
}

function isPlainObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

// Paths of properties the schema validator never read. An object the validator did not enter at
// all (an opaque value) is not inspected.
function unknownFields(value, reads, path, out) {
  const seen = reads.get(value);
  if (!seen) return out;
  if (Array.isArray(value)) {
    value.forEach((v, i) => unknownFields(v, reads, `${path}[${i}]`, out));
  } else if (isPlainObject(value)) {
    for (const key of Object.keys(value)) {
      if (!seen.has(key)) out.push(`${path}.${key}`);
      else unknownFields(value[key], reads, `${path}.${key}`, out);
    }
  }
  return out;
}

// --- one object -----------------------------------------------------------------------------

// Returns {status: "ok"|"skip"|"fail", name, messages: [...]}.
export function checkObject(obj) {
  if (!isPlainObject(obj)) return { status: "fail", name: "?", messages: ["not a mapping"] };
  const name = `${obj.kind ?? "?"}/${obj.metadata?.name ?? "?"} (${obj.apiVersion ?? "no apiVersion"})`;
  if (typeof obj.apiVersion !== "string" || typeof obj.kind !== "string") {
    return { status: "fail", name, messages: ["apiVersion and kind are required"] };
  }
  const group = obj.apiVersion.includes("/") ? obj.apiVersion.split("/")[0] : "";
  if (SKIPPED_GROUPS.some((re) => re.test(group))) {
    return { status: "skip", name, messages: ["Kong CRD: no schema in kubernetes-models, not checked"] };
  }
  const Model = MODELS.get(`${obj.apiVersion}/${obj.kind}`);
  if (!Model) {
    return { status: "fail", name, messages: [`unknown kind ${obj.apiVersion} ${obj.kind}: cannot check it`] };
  }
  const messages = [];
  try {
    new Model(obj).validate();
  } catch (e) {
    messages.push(...String(e.message ?? e).split("\n").filter(Boolean));
  }
  const reads = new WeakMap();
  const copy = structuredClone(obj);
  try {
    Model.prototype.validate.call(tracked(copy, reads, new WeakMap()));
  } catch {
    // already reported by the first pass
  }
  for (const p of unknownFields(copy, reads, "", [])) {
    messages.push(`unknown field ${p.slice(1)} (not in the ${obj.kind} schema: a typo?)`);
  }
  return { status: messages.length ? "fail" : "ok", name, messages };
}

// --- files ----------------------------------------------------------------------------------

function lineOf(text, offset) {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text[i] === "\n") line++;
  return line;
}

// Returns {ok, skipped, failed, lines: [...]} for one multi-document YAML text.
export function checkText(text, label) {
  const result = { ok: 0, skipped: 0, failed: 0, lines: [] };
  for (const doc of parseAllDocuments(text)) {
    const where = `${label}:${lineOf(text, doc.range?.[0] ?? 0)}`;
    if (doc.errors?.length) {
      result.failed++;
      const first = doc.errors[0];
      const at = first.linePos?.[0] ? `${label}:${first.linePos[0].line}:${first.linePos[0].col}` : where;
      result.lines.push(`FAIL ${at}: YAML: ${first.message.split("\n")[0]}`);
      continue;
    }
    const obj = doc.toJS();
    if (obj === null || obj === undefined) continue; // empty document
    const r = checkObject(obj);
    if (r.status === "ok") {
      result.ok++;
      result.lines.push(`ok   ${where}: ${r.name}`);
    } else if (r.status === "skip") {
      result.skipped++;
      result.lines.push(`skip ${where}: ${r.name}: ${r.messages.join("; ")}`);
    } else {
      result.failed++;
      result.lines.push(`FAIL ${where}: ${r.name}`);
      for (const m of r.messages) result.lines.push(`       ${m}`);
    }
  }
  return result;
}

// --- self-test ------------------------------------------------------------------------------

const GOOD_DEPLOYMENT = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: good, labels: {app: x}}
spec:
  replicas: 3
  selector: {matchLabels: {app: x}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: x}}
    spec:
      terminationGracePeriodSeconds: 35
      containers:
        - name: c
          image: rollsafe:0.1.0
          args: [serve, --drain-delay, 5s]
          resources: {limits: {cpu: "1", memory: 256Mi}}
          lifecycle: {preStop: {httpGet: {path: /lifecycle/prestop, port: admin}}}
`;

// Each case must be rejected, with a message matching `expect`.
const BROKEN = [
  {
    what: 'replicas: "three"',
    yaml: GOOD_DEPLOYMENT.replace("replicas: 3", 'replicas: "three"'),
    expect: /replicas must be integer/,
  },
  {
    what: "a misspelt field (terminationGracePeriodSecond)",
    yaml: GOOD_DEPLOYMENT.replace("terminationGracePeriodSeconds", "terminationGracePeriodSecond"),
    expect: /unknown field spec\.template\.spec\.terminationGracePeriodSecond/,
  },
  {
    what: "a containerPort given as a name",
    yaml: GOOD_DEPLOYMENT.replace("image: rollsafe:0.1.0", "ports: [{containerPort: http}]"),
    expect: /containerPort must be integer/,
  },
  {
    what: "a Deployment without selector",
    yaml: GOOD_DEPLOYMENT.replace("  selector: {matchLabels: {app: x}}\n", ""),
    expect: /must have required property selector/,
  },
  {
    what: "a PodDisruptionBudget whose maxUnavailable is a list",
    yaml: "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: p}\nspec: {maxUnavailable: [1]}\n",
    expect: /maxUnavailable/,
  },
  {
    what: "a kind it has no schema for",
    yaml: "apiVersion: apps/v1\nkind: Deploymnt\nmetadata: {name: d}\n",
    expect: /cannot check/,
  },
  {
    what: "invalid YAML",
    yaml: "apiVersion: v1\nkind: Service\nmetadata: {name: [\n",
    expect: /YAML/,
  },
];

function selfTest() {
  let failures = 0;
  const good = checkText(GOOD_DEPLOYMENT, "self-test:good");
  if (good.failed || good.ok !== 1) {
    failures++;
    console.log(`FAIL self-test: the valid Deployment was not accepted:\n${good.lines.join("\n")}`);
  } else {
    console.log("ok   self-test: a valid Deployment is accepted");
  }
  const kong = checkText(
    "apiVersion: configuration.konghq.com/v1beta1\nkind: KongUpstreamPolicy\nmetadata: {name: k}\n",
    "self-test:kong",
  );
  if (kong.skipped !== 1 || kong.failed) {
    failures++;
    console.log(`FAIL self-test: a Kong CRD was not skipped:\n${kong.lines.join("\n")}`);
  } else {
    console.log("ok   self-test: a Kong CRD is skipped with a note");
  }
  for (const c of BROKEN) {
    const r = checkText(c.yaml, "self-test");
    const text = r.lines.join("\n");
    if (r.failed !== 1 || !c.expect.test(text)) {
      failures++;
      console.log(`FAIL self-test: ${c.what} was not rejected as expected (${c.expect}):\n${text}`);
    } else {
      const reason = r.lines.find((l) => c.expect.test(l)).trim();
      console.log(`ok   self-test: rejects ${c.what}: ${reason}`);
    }
  }
  console.log(failures ? `validate self-test: FAIL (${failures})` : "validate self-test: PASS");
  return failures ? 1 : 0;
}

// --- main -----------------------------------------------------------------------------------

function main(argv) {
  if (argv.length === 1 && argv[0] === "--self-test") return selfTest();
  if (argv.length === 0 || argv.some((a) => a.startsWith("--"))) {
    console.error("usage: node validate.mjs FILE... ('-' = stdin) | node validate.mjs --self-test");
    return 2;
  }
  const total = { ok: 0, skipped: 0, failed: 0 };
  for (const file of argv) {
    let text;
    try {
      text = readFileSync(file === "-" ? 0 : file, "utf8");
    } catch (e) {
      console.error(`validate: cannot read ${file}: ${e.message}`);
      return 2;
    }
    const r = checkText(text, file === "-" ? "<stdin>" : file);
    for (const line of r.lines) console.log(line);
    total.ok += r.ok;
    total.skipped += r.skipped;
    total.failed += r.failed;
  }
  const verdict = total.failed || total.ok === 0 ? "FAIL" : "PASS";
  console.log(
    `validate: ${verdict} — ${total.ok} valid, ${total.failed} invalid, ${total.skipped} skipped`,
  );
  return verdict === "PASS" ? 0 : 1;
}

process.exitCode = main(process.argv.slice(2));

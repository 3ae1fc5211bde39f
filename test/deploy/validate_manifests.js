// validate_manifests.js: offline validation of deploy/kubernetes/*.yaml.
//
// Every document is checked against the Kubernetes OpenAPI schema of its
// apiVersion/kind with npm `kubernetes-models` (parsed with npm `yaml`). Those
// schemas allow unknown fields (a typo such as "hostPid" passes them), so the
// fields ember depends on are then checked by value, as deploy/README.md
// describes them: probes through grpc.health.v1 via `emberctl health`, hostPID
// for re-adoption, a rolling update that never runs two emberds on one node,
// least privilege (NET_ADMIN only), hostPath data and socket dirs, resource
// requests.
//
// Usage: NODE_PATH=<dir>/node_modules node validate_manifests.js [DIR]
// Prints one line per document and per check; exits 1 on any failure.
'use strict';

const fs = require('fs');
const path = require('path');
const YAML = require('yaml');

const dir = process.argv[2] || path.join(__dirname, '..', '..', 'deploy', 'kubernetes');
let failures = 0;

function fail(msg) {
  failures++;
  console.log('FAIL ' + msg);
}
function ok(msg) {
  console.log('ok   ' + msg);
}
function check(cond, msg) {
  if (cond) ok(msg);
  else fail(msg);
}

// apiVersion "apps/v1" -> kubernetes-models/apps/v1/<Kind>; "v1" -> v1/<Kind>.
function modelFor(apiVersion, kind) {
  const mod = 'kubernetes-models/' + apiVersion + '/' + kind;
  try {
    return require(mod)[kind];
  } catch (e) {
    return null;
  }
}

const files = fs.readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort();
if (files.length === 0) fail('no manifests in ' + dir);
const docs = [];
for (const f of files) {
  const text = fs.readFileSync(path.join(dir, f), 'utf8');
  for (const doc of YAML.parseAllDocuments(text)) {
    if (doc.errors.length) {
      fail(f + ': YAML: ' + doc.errors.map((e) => e.message).join('; '));
      continue;
    }
    const obj = doc.toJS();
    if (obj === null) continue;
    const name = f + ': ' + obj.kind + '/' + (obj.metadata && obj.metadata.name);
    const Model = modelFor(obj.apiVersion, obj.kind);
    if (!Model) {
      fail(name + ': unknown apiVersion/kind ' + obj.apiVersion + '/' + obj.kind);
      continue;
    }
    try {
      new Model(obj).validate();
    } catch (e) {
      fail(name + ': schema: ' + e.message);
      continue;
    }
    ok(name + ': valid against the Kubernetes schema');
    docs.push(obj);
  }
}

// ---- ember's own requirements on the DaemonSet ----
const ds = docs.find((d) => d.kind === 'DaemonSet' && d.metadata.name === 'emberd');
if (!ds) {
  fail('no DaemonSet emberd');
} else {
  const spec = ds.spec.template.spec;
  const c = spec.containers.find((x) => x.name === 'emberd') || {};
  const sc = c.securityContext || {};
  const probeCmd = (p) => (p && p.exec && p.exec.command) || [];
  const isHealth = (p) => probeCmd(p)[0] === 'emberctl' && probeCmd(p).includes('health');
  check(isHealth(c.readinessProbe), 'readiness probe runs `emberctl health` (grpc.health.v1 over the unix socket)');
  check(isHealth(c.livenessProbe), 'liveness probe runs `emberctl health`');
  check(spec.hostPID === true, 'hostPID: VMM pids stay meaningful to the next pod (re-adoption)');
  const args = c.args || [];
  const cg = args.indexOf('--vmm-cgroup');
  check(cg >= 0 && typeof args[cg + 1] === 'string' && args[cg + 1] !== '',
    '--vmm-cgroup: VMMs leave the pod\'s cgroup, so a pod replacement does not kill guests');
  const ru = ds.spec.updateStrategy || {};
  check(ru.type === 'RollingUpdate' && ru.rollingUpdate && ru.rollingUpdate.maxSurge === 0,
    'RollingUpdate with maxSurge 0: never two emberds on one node');
  check(sc.privileged !== true, 'not privileged');
  check(sc.allowPrivilegeEscalation === false, 'no privilege escalation');
  const caps = (sc.capabilities || {});
  check((caps.drop || []).includes('ALL') &&
        JSON.stringify(caps.add || []) === JSON.stringify(['NET_ADMIN']),
    'capabilities: drop ALL, add NET_ADMIN only');
  const vols = Object.fromEntries((spec.volumes || []).map((v) => [v.name, v]));
  const mounts = Object.fromEntries((c.volumeMounts || []).map((m) => [m.mountPath, vols[m.name]]));
  const hp = (p) => mounts[p] && mounts[p].hostPath && mounts[p].hostPath.path;
  check(hp('/var/lib/ember') === '/var/lib/ember', 'data dir is the host\'s /var/lib/ember');
  check(hp('/run/ember') === '/run/ember', 'socket dir shared with the host at /run/ember');
  check(hp('/sys/fs/cgroup') === '/sys/fs/cgroup',
    'host cgroup hierarchy mounted, for --vmm-cgroup');
  check(hp('/dev/kvm') === '/dev/kvm' && mounts['/dev/kvm'].hostPath.type === 'CharDevice',
    '/dev/kvm passed in as a char device');
  check((c.env || []).some((e) => e.name === 'EMBER_SOCKET' && e.value === '/run/ember/emberd.sock'),
    'EMBER_SOCKET points emberctl (probes, kubectl exec) at the socket');
  check(c.resources && c.resources.requests && c.resources.requests.cpu && c.resources.requests.memory,
    'resource requests set');
  check((spec.terminationGracePeriodSeconds || 30) >= 30, 'termination grace covers emberd\'s');
  check(spec.automountServiceAccountToken === false, 'no service account token mounted');
}

console.log(failures === 0 ? 'manifests OK (' + docs.length + ' documents)' : failures + ' check(s) failed');
process.exit(failures === 0 ? 0 : 1);

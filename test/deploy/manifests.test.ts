/**
 * deploy/kubernetes.yaml and the Helm chart (deploy/helm/geminio-sidecar): the pod conventions checked in code
 * (native sidecar, restricted Pod Security, probes, drain budget, config checksum, no app port past the sidecar),
 * the embedded sidecar config parsed by the sidecar itself, then the Kubernetes schemas (kubernetes-validate),
 * a security linter (kube-score), `helm lint` and hadolint on the Dockerfile.
 */
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parseConfig } from '../../sidecar/config/load.js';
import { findTool, inCI, repoRoot, run, whyMissing } from './tools.js';

// biome-ignore lint/suspicious/noExplicitAny: Kubernetes objects are checked field by field below.
type Obj = any;

const KUBE_VERSION = '1.33.0';
const CHART = path.join(repoRoot, 'deploy/helm/geminio-sidecar');

function parseDocs(text: string): Obj[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as Obj)
    .filter((d) => d && typeof d === 'object');
}

function one(docs: Obj[], kind: string): Obj {
  const found = docs.filter((d) => d.kind === kind);
  expect(
    found.map((d) => d.metadata.name),
    `one ${kind}`,
  ).toHaveLength(1);
  return found[0];
}

/** Every convention of issue 17 for an app Deployment with the geminio sidecar; returns the parsed sidecar config. */
function checkPod(docs: Obj[]): ReturnType<typeof parseConfig> {
  const cm = one(docs, 'ConfigMap');
  const deploy = one(docs, 'Deployment');
  const service = docs.find((d) => d.kind === 'Service');
  const tpl = deploy.spec.template;
  const pod = tpl.spec;
  const text: string = cm.data['sidecar.yaml'];
  const config = parseConfig(parseDocs(text)[0], 'ConfigMap sidecar.yaml');

  // A config change rolls the pods: the annotation is the hash of exactly this text.
  expect(tpl.metadata.annotations['checksum/config']).toBe(createHash('sha256').update(text).digest('hex'));

  // Native sidecar: an init container that keeps running.
  const sidecar = (pod.initContainers ?? []).find((c: Obj) => c.name === 'geminio-sidecar');
  expect(sidecar, 'geminio-sidecar among initContainers').toBeDefined();
  expect(sidecar.restartPolicy).toBe('Always');
  expect(pod.containers.some((c: Obj) => c.name === 'geminio-sidecar')).toBe(false);
  const configVolume = pod.volumes.find((v: Obj) => v.configMap?.name === cm.metadata.name);
  expect(configVolume, 'a volume of the ConfigMap').toBeDefined();
  expect(sidecar.volumeMounts).toContainEqual(
    expect.objectContaining({ name: configVolume.name, mountPath: '/etc/geminio-sidecar', readOnly: true }),
  );
  expect(sidecar.args).toEqual(['run', '--config', '/etc/geminio-sidecar/sidecar.yaml']);

  // Restricted Pod Security, for every container.
  expect(pod.securityContext.runAsNonRoot).toBe(true);
  expect(pod.securityContext.seccompProfile).toEqual({ type: 'RuntimeDefault' });
  for (const c of [...pod.initContainers, ...pod.containers]) {
    const sc = c.securityContext;
    expect(sc.allowPrivilegeEscalation, c.name).toBe(false);
    expect(sc.readOnlyRootFilesystem, c.name).toBe(true);
    expect(sc.capabilities.drop, c.name).toContain('ALL');
    expect(sc.capabilities.add ?? [], c.name).toEqual([]);
    expect(sc.privileged ?? false, c.name).toBe(false);
    const uid = sc.runAsUser ?? pod.securityContext.runAsUser;
    expect(Number.isInteger(uid) && uid > 0, `${c.name}: numeric non-root runAsUser`).toBe(true);
    expect(sc.seccompProfile?.type ?? pod.securityContext.seccompProfile.type, c.name).toBe('RuntimeDefault');
    // Pinned image: a tag that is not latest, or a digest.
    expect(c.image, c.name).toMatch(/(@sha256:[0-9a-f]{64}|:(?!latest$)[\w][\w.-]*)$/);
    expect(c.resources.requests.memory, c.name).toBeDefined();
    expect(c.resources.limits.memory, c.name).toBeDefined();
  }
  expect(sidecar.securityContext.runAsUser ?? pod.securityContext.runAsUser).toBe(10001); // the Dockerfile's USER

  // Probes on the admin listener, which must bind beyond loopback for the kubelet.
  const adminPort = sidecar.ports.find((p: Obj) => p.name === 'admin').containerPort;
  expect(config.admin.listen).toBe(`0.0.0.0:${adminPort}`);
  expect(sidecar.startupProbe.httpGet).toEqual({ path: '/healthz', port: 'admin' });
  expect(sidecar.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'admin' });
  expect(sidecar.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'admin' });

  // The drain fits: preStop pause + shutdown.gracePeriodMs < terminationGracePeriodSeconds.
  const sleep = Number(sidecar.lifecycle.preStop.exec.command[1]);
  expect(sidecar.lifecycle.preStop.exec.command[0]).toBe('sleep');
  expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(sleep + config.shutdown.gracePeriodMs / 1000);

  // The app's port stays inside the pod: no containerPort, and the Service targets only the sidecar's ports.
  for (const c of pod.containers) expect(c.ports ?? [], c.name).toEqual([]);
  const sidecarPorts = new Set(sidecar.ports.flatMap((p: Obj) => [p.name, p.containerPort]));
  if (service)
    for (const p of service.spec.ports) expect(sidecarPorts.has(p.targetPort), `${p.name}`).toBe(true);
  if (config.inbound) {
    const geminio = sidecar.ports.find((p: Obj) => p.name === 'geminio').containerPort;
    expect(config.inbound.listen).toBe(`0.0.0.0:${geminio}`);
  }
  const policy = docs.find((d) => d.kind === 'NetworkPolicy');
  if (policy) {
    const allowed = policy.spec.ingress.flatMap((r: Obj) => r.ports.map((p: Obj) => p.port));
    for (const port of allowed) expect(sidecarPorts.has(port), `NetworkPolicy port ${port}`).toBe(true);
  }
  return config;
}

const manifest = readFileSync(path.join(repoRoot, 'deploy/kubernetes.yaml'), 'utf8');

describe('deploy/kubernetes.yaml', () => {
  it('follows the pod conventions and carries a config the sidecar accepts', () => {
    const config = checkPod(parseDocs(manifest));
    expect(config.services.app?.target).toBe('http://127.0.0.1:3000');
  });

  it('fails the checks when a convention is broken (the checks can fail)', () => {
    expect(() =>
      checkPod(parseDocs(manifest.replace(/^( +)restartPolicy: Always/m, '$1restartPolicy: OnFailure'))),
    ).toThrow();
    expect(() =>
      checkPod(parseDocs(manifest.replace('gracePeriodMs: 20000', 'gracePeriodMs: 30000'))),
    ).toThrow(/to be '[0-9a-f]{10}/);
    expect(() => checkPod(parseDocs(manifest.replace('drop: [ALL]', 'drop: [NET_RAW]')))).toThrow();
  });
});

const helmMissing = whyMissing(['helm']);
function helm(args: string[]): string {
  const r = run(findTool('helm') as string, args, { cwd: CHART });
  expect(r.status, r.out).toBe(0);
  return r.out;
}

describe.skipIf(helmMissing !== undefined && !inCI)(`Helm chart deploy/helm/geminio-sidecar`, () => {
  it('has helm', () => expect(helmMissing).toBeUndefined());

  it('passes helm lint, with default and full values', () => {
    helm(['lint', '--strict', '--kube-version', KUBE_VERSION, '.']);
    helm([
      'lint',
      '--strict',
      '--kube-version',
      KUBE_VERSION,
      '-f',
      path.join(repoRoot, 'test/deploy/values-full.yaml'),
      '.',
    ]);
  });

  it('renders the example Deployment with the conventions, and the full values into the sidecar config', () => {
    checkPod(parseDocs(helm(['template', 'demo', '.', '--kube-version', KUBE_VERSION])));
    const docs = parseDocs(
      helm([
        'template',
        'edge',
        '.',
        '--kube-version',
        KUBE_VERSION,
        '-f',
        path.join(repoRoot, 'test/deploy/values-full.yaml'),
      ]),
    );
    const config = checkPod(docs);
    expect(config.name).toBe('edge-1');
    expect(config.upstreams.core?.tls.enabled).toBe(true);
    expect(config.outbound.http[0]?.listen).toBe('127.0.0.1:8080');
    expect(config.plugins[0]?.path).toBe('builtin:allow-list');
    expect(config.shutdown.gracePeriodMs).toBe(45000);
    const pod = one(docs, 'Deployment').spec.template.spec;
    expect(pod.terminationGracePeriodSeconds).toBe(45 + 10 + 5);
    const sidecar = pod.initContainers[0];
    expect(sidecar.env).toEqual([{ name: 'GEMINIO_SIDECAR_LOG_LEVEL', value: 'debug' }]);
    expect(sidecar.resources.limits.memory).toBe('512Mi');
    // Each TLS Secret is a read-only volume at its mountPath.
    for (const [secret, mountPath] of [
      ['geminio-core-ca', '/etc/geminio/tls/core'],
      ['geminio-server-tls', '/etc/geminio/tls/server'],
    ]) {
      const vol = pod.volumes.find((v: Obj) => v.secret?.secretName === secret);
      expect(vol, secret).toBeDefined();
      expect(sidecar.volumeMounts).toContainEqual({ name: vol.name, mountPath, readOnly: true });
    }
  });

  it('rolls the pods on a config change, and refuses an unpinned image', () => {
    const checksum = (extra: string[]) =>
      one(parseDocs(helm(['template', 'demo', '.', '--kube-version', KUBE_VERSION, ...extra])), 'Deployment')
        .spec.template.metadata.annotations['checksum/config'];
    expect(checksum([])).not.toBe(checksum(['--set', 'services.app.target=http://127.0.0.1:4000']));
    expect(checksum([])).toBe(checksum(['--set', 'example.replicas=3']));
    const latest = run(findTool('helm') as string, ['template', 'demo', '.', '--set', 'image.tag=latest'], {
      cwd: CHART,
    });
    expect(latest.status).not.toBe(0);
  });

  it("renders a user's own Deployment through the named templates (test/deploy/parent-chart)", () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'geminio-parent-chart-'));
    try {
      cpSync(path.join(repoRoot, 'test/deploy/parent-chart'), dir, { recursive: true });
      const chartYaml = path.join(dir, 'Chart.yaml');
      writeFileSync(chartYaml, readFileSync(chartYaml, 'utf8').replace(/file:\/\/\S+/, `file://${CHART}`));
      helm(['dependency', 'build', dir]);
      const docs = parseDocs(helm(['template', 'r1', dir, '--kube-version', KUBE_VERSION]));
      expect(docs.map((d) => d.kind).sort()).toEqual(['ConfigMap', 'Deployment']);
      const config = checkPod(docs);
      expect(config.inbound).toBeUndefined();
      expect(config.outbound.http[0]?.upstream).toBe('core');
      expect(one(docs, 'Deployment').spec.template.spec.containers.map((c: Obj) => c.name)).toEqual(['web']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('renders only the ConfigMap with example.enabled=false (the pod parts come from the named templates)', () => {
    const docs = parseDocs(
      helm(['template', 'demo', '.', '--kube-version', KUBE_VERSION, '--set', 'example.enabled=false']),
    );
    expect(docs.map((d) => d.kind)).toEqual(['ConfigMap']);
  });
});

/** helm template output for the schema and lint checks (undefined without helm). */
function rendered(): string | undefined {
  if (!findTool('helm')) return undefined;
  return helm([
    'template',
    'edge',
    '.',
    '--kube-version',
    KUBE_VERSION,
    '-f',
    path.join(repoRoot, 'test/deploy/values-full.yaml'),
  ]);
}

const validateMissing = whyMissing(['kubernetes-validate', 'helm']);
describe.skipIf(validateMissing !== undefined && !inCI)(
  'Kubernetes schemas (kubernetes-validate, strict)',
  () => {
    it('has kubernetes-validate and helm', () => expect(validateMissing).toBeUndefined());
    it.each([
      ['deploy/kubernetes.yaml', () => manifest],
      ['the chart rendered with full values', () => rendered() as string],
    ])('%s validates against Kubernetes %s', (_name, text) => {
      const tool = findTool('kubernetes-validate') as string;
      const r = run(tool, ['--strict', '--kubernetes-version', KUBE_VERSION, '-'], { input: text() });
      expect(r.status, r.out).toBe(0);
      expect(r.out).toMatch(/passed for resource deployment\//);
      // and it rejects what the API server would: a misspelled field.
      const bad = run(tool, ['--strict', '--kubernetes-version', KUBE_VERSION, '-'], {
        input: text().replace('readOnlyRootFilesystem', 'readOnlyRootFileSystem'),
      });
      expect(bad.status, bad.out).not.toBe(0);
    });
  },
);

// kube-score's "Pull Policy Always" check is ignored: with a pinned tag IfNotPresent is the right policy. Its egress
// NetworkPolicy warning stays a warning: the sidecar dials upstreams the chart cannot know.
const scoreMissing = whyMissing(['kube-score', 'helm']);
describe.skipIf(scoreMissing !== undefined && !inCI)('security lint (kube-score)', () => {
  it('has kube-score and helm', () => expect(scoreMissing).toBeUndefined());
  it.each([
    ['deploy/kubernetes.yaml', () => manifest],
    ['the chart rendered with full values', () => rendered() as string],
  ])('%s has no critical finding', (_name, text) => {
    const tool = findTool('kube-score') as string;
    const args = ['score', '--ignore-test', 'container-image-pull-policy', '--output-format', 'ci', '-'];
    const r = run(tool, args, { input: text() });
    expect(r.status, r.out).toBe(0);
    expect(r.out).not.toMatch(/\[CRITICAL\]/);
    const bad = run(tool, args, {
      input: text().replace(/readOnlyRootFilesystem: true/g, 'readOnlyRootFilesystem: false'),
    });
    expect(bad.status, bad.out).not.toBe(0);
  });
});

const hadolintMissing = whyMissing(['hadolint']);
describe.skipIf(hadolintMissing !== undefined && !inCI)('Dockerfile lint (hadolint)', () => {
  it('has hadolint', () => expect(hadolintMissing).toBeUndefined());
  it('passes hadolint', () => {
    const r = run(findTool('hadolint') as string, ['Dockerfile']);
    expect(r.status, r.out).toBe(0);
  });
});

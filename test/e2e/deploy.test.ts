// Keeps deploy/ and docs/operations.md honest: every YAML and JSON file under deploy/ parses; the
// Kubernetes manifests fit together (probe paths, ports, the mounted config and mappings, the Secret)
// and the config they mount loads the way a ConfigMap volume lays it out; the alerts and the dashboard
// use only metrics the worker exports; every runbook link lands on a heading of docs/operations.md;
// the Dockerfile's and compose file's health checks ask /healthz on the configured port.
import { mkdtemp, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { loadConfig } from '../../src/config/load.js';
import { Metrics } from '../../src/runtime/metrics.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const DEPLOY = join(ROOT, 'deploy');
const OPERATIONS = join(ROOT, 'docs', 'operations.md');

// ---------------------------------------------------------------------------------------------
// The metrics contract: what the alerts and the dashboard may reference.

const PREFIX = 'cdc_invalidator_';
const COUNTERS = [
  'changes_total',
  'keys_total',
  'batches_total',
  'retries_total',
  'dead_letters_total',
  'fallbacks_total',
] as const;
const GAUGES = [
  'lag_seconds',
  'source_lag_bytes',
  'slot_retained_wal_bytes',
  'ready',
  'source_connected',
  'sink_connected',
  'buffered_changes',
  'active',
] as const;
const HISTOGRAMS = ['apply_duration_seconds', 'end_to_end_seconds'] as const;
/** prom-client's default process and Node.js metrics, which the worker exports with the same prefix. */
const DEFAULT_METRICS = [
  'process_cpu_user_seconds_total',
  'process_cpu_system_seconds_total',
  'process_cpu_seconds_total',
  'process_start_time_seconds',
  'process_resident_memory_bytes',
  'process_virtual_memory_bytes',
  'process_heap_bytes',
  'process_open_fds',
  'process_max_fds',
  'nodejs_eventloop_lag_seconds',
  'nodejs_eventloop_lag_min_seconds',
  'nodejs_eventloop_lag_max_seconds',
  'nodejs_eventloop_lag_mean_seconds',
  'nodejs_eventloop_lag_stddev_seconds',
  'nodejs_eventloop_lag_p50_seconds',
  'nodejs_eventloop_lag_p90_seconds',
  'nodejs_eventloop_lag_p99_seconds',
  'nodejs_active_resources',
  'nodejs_active_resources_total',
  'nodejs_active_handles',
  'nodejs_active_handles_total',
  'nodejs_active_requests',
  'nodejs_active_requests_total',
  'nodejs_heap_size_total_bytes',
  'nodejs_heap_size_used_bytes',
  'nodejs_external_memory_bytes',
  'nodejs_heap_space_size_total_bytes',
  'nodejs_heap_space_size_used_bytes',
  'nodejs_heap_space_size_available_bytes',
  'nodejs_version_info',
  'nodejs_gc_duration_seconds',
] as const;

/** Metric names as they appear in PromQL: histograms through their _bucket, _sum and _count series. */
const ALLOWED = new Set<string>([
  ...[...COUNTERS, ...GAUGES, ...DEFAULT_METRICS].map((m) => PREFIX + m),
  ...HISTOGRAMS.flatMap((h) => ['', '_bucket', '_sum', '_count'].map((s) => PREFIX + h + s)),
  PREFIX + 'nodejs_gc_duration_seconds_bucket',
  PREFIX + 'nodejs_gc_duration_seconds_sum',
  PREFIX + 'nodejs_gc_duration_seconds_count',
]);

function metricNames(expr: string): string[] {
  return [...expr.matchAll(/(?<![A-Za-z0-9_:])cdc_invalidator_[A-Za-z0-9_:]+/g)].map((m) => m[0]);
}

function unknownMetrics(expr: string): string[] {
  return metricNames(expr).filter((name) => !ALLOWED.has(name));
}

// ---------------------------------------------------------------------------------------------
// Reading deploy/.

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = join(dir, entry.name);
    return entry.isDirectory() ? walk(full) : [full];
  });
}

const deployFiles = walk(DEPLOY).sort();
const yamlFiles = deployFiles.filter((f) => /\.ya?ml$/.test(f));
const jsonFiles = deployFiles.filter((f) => f.endsWith('.json'));
const rel = (file: string) => relative(ROOT, file);

/** Every document of a YAML file, as plain data; throws on the first syntax error or warning. */
function yamlDocuments(file: string): unknown[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'), { prettyErrors: true });
  if (!Array.isArray(docs)) throw new Error(`${rel(file)}: not a YAML stream`);
  return docs.flatMap((doc) => {
    const problems = [...doc.errors, ...doc.warnings];
    if (problems.length > 0) throw new Error(`${rel(file)}: ${problems.map((p) => p.message).join('; ')}`);
    const value: unknown = doc.toJS();
    return value === null || value === undefined ? [] : [value];
  });
}

type Obj = Record<string, unknown>;

interface K8sObject extends Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
}

const K8S_DIR = join(DEPLOY, 'kubernetes');
const k8sFiles = yamlFiles.filter((f) => dirname(f) === K8S_DIR && !f.endsWith('kustomization.yaml'));
const k8sObjects: Array<{ file: string; object: K8sObject }> = k8sFiles.flatMap((file) =>
  yamlDocuments(file).map((object) => ({ file, object: object as K8sObject })),
);

function one(kind: string, name?: string): K8sObject {
  const found = k8sObjects
    .map((o) => o.object)
    .filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  expect(found, `exactly one ${kind}${name === undefined ? '' : ` "${name}"`} under deploy/kubernetes`).toHaveLength(1);
  return found[0]!;
}

interface Probe {
  httpGet?: { path?: string; port?: string | number };
}
interface Container {
  name: string;
  args?: string[];
  command?: string[];
  env?: Array<{ name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } }>;
  ports?: Array<{ name?: string; containerPort: number }>;
  startupProbe?: Probe;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: Obj;
  volumeMounts?: Array<{ name: string; mountPath: string; subPath?: string; readOnly?: boolean }>;
}
interface PodSpec {
  securityContext?: Obj;
  containers: Container[];
  volumes?: Array<{ name: string; configMap?: { name: string }; secret?: { secretName: string } }>;
}
interface DeploymentSpec {
  replicas?: number;
  strategy?: { type?: string };
  selector: { matchLabels: Record<string, string> };
  template: { metadata: { labels: Record<string, string> }; spec: PodSpec };
}

// ---------------------------------------------------------------------------------------------

describe('deploy/', () => {
  it('holds the Kubernetes manifests, the dashboard and the alerts', () => {
    const names = deployFiles.map(rel);
    expect(names).toContain('deploy/kubernetes/kustomization.yaml');
    expect(names).toContain('deploy/kubernetes/deployment.yaml');
    expect(names).toContain('deploy/grafana/cdc-invalidator-dashboard.json');
    expect(names).toContain('deploy/prometheus/alerts.yaml');
  });

  it.each(yamlFiles.map((f) => [rel(f), f]))('%s parses (every document)', (_name, file) => {
    expect(yamlDocuments(file).length).toBeGreaterThan(0);
  });

  it.each(jsonFiles.map((f) => [rel(f), f]))('%s parses', (_name, file) => {
    expect(() => JSON.parse(readFileSync(file, 'utf8')) as unknown).not.toThrow();
  });
});

describe('deploy/kubernetes', () => {
  const kustomization = yamlDocuments(join(K8S_DIR, 'kustomization.yaml'))[0] as { resources?: string[]; namespace?: string };
  const kustomizationText = readFileSync(join(K8S_DIR, 'kustomization.yaml'), 'utf8');
  const deployment = one('Deployment', 'cdc-invalidator');
  const spec = deployment['spec'] as DeploymentSpec;
  const pod = spec.template.spec;
  const container = pod.containers[0]!;
  const configMap = one('ConfigMap', 'cdc-invalidator-config');
  const mappingsMap = one('ConfigMap', 'cdc-invalidator-mappings');
  const configData = configMap['data'] as Record<string, string>;
  const mappingsData = mappingsMap['data'] as Record<string, string>;
  const configText = configData['cdc-invalidator.yaml']!;
  const config = parse(configText) as { mappings: string; http?: { port?: number } };
  const httpPort = config.http?.port ?? 9464;

  it('names every manifest in kustomization.yaml, and no namespace anywhere', () => {
    const resources = kustomization.resources ?? [];
    for (const resource of resources) expect(existsSync(join(K8S_DIR, resource)), `${resource} exists`).toBe(true);
    for (const file of k8sFiles) {
      const name = relative(K8S_DIR, file);
      // The optional ones (needing CRDs) are named in a comment, ready to uncomment.
      expect(resources.includes(name) || kustomizationText.includes(`# - ${name}`), `${name} in kustomization.yaml`).toBe(true);
    }
    expect(kustomization.namespace).toBeUndefined();
    for (const { file, object } of k8sObjects) {
      expect(object.apiVersion, `${rel(file)}: apiVersion`).toEqual(expect.any(String));
      expect(object.kind, `${rel(file)}: kind`).toEqual(expect.any(String));
      expect(object.metadata?.name, `${rel(file)}: metadata.name`).toEqual(expect.any(String));
      expect(object.metadata.namespace, `${rel(file)}: ${object.kind} names no namespace`).toBeUndefined();
    }
  });

  it('runs one replica, replaced with Recreate', () => {
    expect(deployment.apiVersion).toBe('apps/v1');
    expect(spec.replicas).toBe(1);
    expect(spec.strategy?.type).toBe('Recreate');
    expect(pod.containers).toHaveLength(1);
    for (const [label, value] of Object.entries(spec.selector.matchLabels)) {
      expect(spec.template.metadata.labels[label]).toBe(value);
    }
  });

  it('probes /healthz (startup, liveness) and /readyz (readiness) on the config\'s http.port', () => {
    const port = container.ports?.find((p) => p.containerPort === httpPort);
    expect(port, `a containerPort ${httpPort} (http.port in the ConfigMap)`).toBeDefined();
    expect(container.ports).toHaveLength(1);
    const probes = { startupProbe: '/healthz', livenessProbe: '/healthz', readinessProbe: '/readyz' } as const;
    for (const [probe, path] of Object.entries(probes) as Array<[keyof typeof probes, string]>) {
      const get = container[probe]?.httpGet;
      expect(get?.path, `${probe} path`).toBe(path);
      expect(get?.port === port!.name || get?.port === httpPort, `${probe} port is ${httpPort}`).toBe(true);
    }
  });

  it('exposes the same port through the Service and the PodMonitor', () => {
    const service = one('Service', 'cdc-invalidator');
    const serviceSpec = service['spec'] as { selector: Record<string, string>; ports: Array<{ port: number; targetPort: string | number }> };
    const port = container.ports![0]!;
    expect(serviceSpec.ports.some((p) => p.targetPort === port.name || p.targetPort === port.containerPort)).toBe(true);
    for (const [label, value] of Object.entries(serviceSpec.selector)) expect(spec.template.metadata.labels[label]).toBe(value);

    const monitors = k8sObjects.map((o) => o.object).filter((o) => o.kind === 'PodMonitor' || o.kind === 'ServiceMonitor');
    for (const monitor of monitors) {
      const m = monitor['spec'] as { podMetricsEndpoints?: Array<{ port?: string; path?: string }>; endpoints?: Array<{ port?: string; path?: string }> };
      for (const endpoint of m.podMetricsEndpoints ?? m.endpoints ?? []) {
        expect(endpoint.port).toBe(port.name);
        expect(endpoint.path ?? '/metrics').toBe('/metrics');
      }
    }
  });

  it('sizes the worker and locks it down', () => {
    expect(container.resources?.requests?.['memory']).toBe('256Mi');
    expect(container.resources?.requests?.['cpu']).toBe('500m');
    expect(container.resources?.limits?.['memory']).toEqual(expect.any(String));
    expect(pod.securityContext?.['runAsNonRoot']).toBe(true);
    // The image's "node" user: numeric, or the kubelet cannot check runAsNonRoot.
    expect(pod.securityContext?.['runAsUser']).toBe(1000);
    expect(container.securityContext?.['readOnlyRootFilesystem']).toBe(true);
    expect(container.securityContext?.['allowPrivilegeEscalation']).toBe(false);
  });

  it('takes DATABASE_URL and REDIS_URL from the Secret, which has both', () => {
    const secret = one('Secret', 'cdc-invalidator');
    const keys = Object.keys({ ...(secret['stringData'] as Obj | undefined), ...(secret['data'] as Obj | undefined) });
    for (const name of ['DATABASE_URL', 'REDIS_URL']) {
      const ref = container.env?.find((e) => e.name === name)?.valueFrom?.secretKeyRef;
      expect(ref, `${name} from a Secret`).toBeDefined();
      expect(ref!.name).toBe(secret.metadata.name);
      expect(keys).toContain(ref!.key);
      expect(configText).toContain(`\${${name}`);
    }
  });

  it('mounts the config where --config points, and the mappings where its "mappings:" resolves', () => {
    const args = [...(container.command ?? []), ...(container.args ?? [])];
    const configPath = args[args.indexOf('--config') + 1];
    expect(args.indexOf('--config')).toBeGreaterThanOrEqual(0);
    const mounts = container.volumeMounts ?? [];
    const volume = (name: string) => pod.volumes?.find((v) => v.name === name);

    const configMount = mounts.find((m) => m.mountPath === configPath);
    expect(configMount, `a mount at ${configPath}`).toBeDefined();
    expect(volume(configMount!.name)?.configMap?.name).toBe(configMap.metadata.name);
    expect(configMount!.subPath).toBe('cdc-invalidator.yaml');

    const mappingsPath = posix.resolve(posix.dirname(configPath!), config.mappings);
    const mappingsMount = mounts.find((m) => m.mountPath === mappingsPath);
    expect(mappingsMount, `a mount at ${mappingsPath}`).toBeDefined();
    expect(volume(mappingsMount!.name)?.configMap?.name).toBe(mappingsMap.metadata.name);
    expect(mappingsMount!.subPath).toBeUndefined();
    for (const key of Object.keys(mappingsData)) expect(key).toMatch(/^[^.].*\.ya?ml$/);
  });

  describe('the config, laid out as a ConfigMap volume', () => {
    let dir = '';
    afterAll(async () => {
      if (dir !== '') await rm(dir, { recursive: true, force: true });
    });

    it('loads, skipping the hidden ..data entries and following the links', async () => {
      dir = await mkdtemp(join(tmpdir(), 'cdc-deploy-'));
      // subPath mount: a plain file. Directory mount: <key> -> ..data/<key>, ..data -> ..<timestamp>/.
      await writeFile(join(dir, 'cdc-invalidator.yaml'), configText);
      const mappings = join(dir, config.mappings);
      const stamp = '..2025_01_01_00_00_00.000000000';
      await mkdir(join(mappings, stamp), { recursive: true });
      await symlink(stamp, join(mappings, '..data'));
      for (const [key, text] of Object.entries(mappingsData)) {
        await writeFile(join(mappings, stamp, key), text);
        await symlink(join('..data', key), join(mappings, key));
      }

      const loaded = await loadConfig(join(dir, 'cdc-invalidator.yaml'), {
        DATABASE_URL: 'postgres://cdc_invalidator:secret@postgres:5432/app',
        REDIS_URL: 'redis://redis:6379/0',
      });
      expect(loaded.mappingFiles).toEqual(Object.keys(mappingsData).sort().map((key) => join(mappings, key)));
      expect(loaded.config.http.port).toBe(httpPort);
      expect(loaded.warnings).toEqual([]);
    });
  });

  it('ships the example mappings of the repository', () => {
    const repo = readdirSync(join(ROOT, 'mappings')).filter((f) => /\.ya?ml$/.test(f)).sort();
    expect(Object.keys(mappingsData).sort()).toEqual(repo);
    for (const file of repo) {
      expect(parse(mappingsData[file]!), file).toEqual(parse(readFileSync(join(ROOT, 'mappings', file), 'utf8')));
    }
  });
});

describe('the metrics contract', () => {
  it('is what the worker exports', async () => {
    const exported = new Set((await new Metrics().registry.getMetricsAsJSON()).map((m) => m.name));
    for (const name of [...COUNTERS, ...GAUGES, ...HISTOGRAMS]) expect(exported, PREFIX + name).toContain(PREFIX + name);
    for (const name of ['process_resident_memory_bytes', 'process_start_time_seconds', 'process_cpu_seconds_total']) {
      expect(exported, PREFIX + name).toContain(PREFIX + name);
    }
  });
});

interface AlertRule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

describe('deploy/prometheus/alerts.yaml', () => {
  const rulesFile = yamlDocuments(join(DEPLOY, 'prometheus', 'alerts.yaml'))[0] as Obj;
  // A plain rules file has groups at the top; a PrometheusRule under spec.
  const groups = ((rulesFile['groups'] ?? (rulesFile['spec'] as Obj | undefined)?.['groups']) ?? []) as Array<{
    name: string;
    rules: AlertRule[];
  }>;
  const alerts = groups.flatMap((g) => g.rules).filter((r) => r.alert !== undefined);

  it('has alerts, each named once', () => {
    expect(alerts.length).toBeGreaterThan(0);
    const names = alerts.map((a) => a.alert);
    expect(new Set(names).size).toBe(names.length);
  });

  it.each(alerts.map((a) => [a.alert!, a]))('%s uses only exported metrics', (_name, alert) => {
    expect(metricNames(alert.expr).length + (/\bup\{/.test(alert.expr) ? 1 : 0)).toBeGreaterThan(0);
    expect(unknownMetrics(alert.expr)).toEqual([]);
  });

  it.each(alerts.map((a) => [a.alert!, a]))('%s has a severity, summary, description and runbook', (_name, alert) => {
    expect(alert.labels?.['severity']).toMatch(/^(critical|warning|info)$/);
    expect(alert.annotations?.['summary']).toEqual(expect.stringMatching(/\S/));
    expect(alert.annotations?.['description']).toEqual(expect.stringMatching(/\S/));
    expect(alert.annotations?.['runbook_url']).toMatch(/^docs\/operations\.md#[a-z0-9-]+$/);
  });

  it('covers lag, WAL, dead letters, readiness, a missing worker and retries', () => {
    const uses = (metric: string) => alerts.some((a) => metricNames(a.expr).includes(PREFIX + metric));
    for (const metric of ['lag_seconds', 'source_lag_bytes', 'slot_retained_wal_bytes', 'dead_letters_total', 'ready', 'retries_total']) {
      expect(uses(metric), `an alert on ${PREFIX}${metric}`).toBe(true);
    }
    expect(alerts.some((a) => /\babsent\(cdc_invalidator_/.test(a.expr))).toBe(true);
    expect(alerts.some((a) => /\bup\{/.test(a.expr))).toBe(true);
  });
});

interface Target {
  expr?: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  targets?: Target[];
  panels?: Panel[];
  datasource?: { type?: string; uid?: string };
}

describe('deploy/grafana/cdc-invalidator-dashboard.json', () => {
  const dashboard = JSON.parse(readFileSync(join(DEPLOY, 'grafana', 'cdc-invalidator-dashboard.json'), 'utf8')) as {
    title: string;
    uid: string;
    schemaVersion: number;
    panels: Panel[];
    templating: { list: Array<{ name: string; type: string; query?: unknown; definition?: string }> };
  };
  const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
  const graphs = panels.filter((p) => p.type !== 'row');
  const exprs = graphs.flatMap((p) => (p.targets ?? []).map((t) => [p.title, t.expr ?? ''] as const));

  it('is a dashboard: title, uid, schema version, panels with unique ids', () => {
    expect(dashboard.title).toBe('cdc-invalidator');
    expect(dashboard.uid).toMatch(/^[A-Za-z0-9_-]{1,40}$/);
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(30);
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('lays the panels out on the 24-column grid without overlaps', () => {
    for (const p of panels) {
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
      expect(p.gridPos.w * p.gridPos.h, p.title).toBeGreaterThan(0);
    }
    for (const [i, a] of panels.entries()) {
      for (const b of panels.slice(i + 1)) {
        const apart =
          a.gridPos.x + a.gridPos.w <= b.gridPos.x ||
          b.gridPos.x + b.gridPos.w <= a.gridPos.x ||
          a.gridPos.y + a.gridPos.h <= b.gridPos.y ||
          b.gridPos.y + b.gridPos.h <= a.gridPos.y;
        expect(apart, `"${a.title}" and "${b.title}" overlap`).toBe(true);
      }
    }
  });

  it('queries the data source chosen in the dashboard', () => {
    expect(dashboard.templating.list.some((v) => v.name === 'datasource' && v.type === 'datasource')).toBe(true);
    for (const p of graphs) {
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets ?? []) expect(t.datasource?.uid ?? p.datasource?.uid, p.title).toBe('${datasource}');
    }
  });

  it.each(exprs.map(([title, expr], i) => [`${title} #${i}`, expr]))('%s uses only exported metrics', (_name, expr) => {
    expect(metricNames(expr).length).toBeGreaterThan(0);
    expect(unknownMetrics(expr)).toEqual([]);
  });

  it('template variables query only exported metrics', () => {
    for (const v of dashboard.templating.list.filter((t) => t.type === 'query')) {
      expect(unknownMetrics(JSON.stringify(v.query) + (v.definition ?? ''))).toEqual([]);
    }
  });

  it('shows lag, WAL, throughput, latency, problems, connections and memory', () => {
    const used = new Set(exprs.flatMap(([, e]) => metricNames(e)));
    const wanted = [
      'lag_seconds',
      'source_lag_bytes',
      'slot_retained_wal_bytes',
      'changes_total',
      'keys_total',
      'apply_duration_seconds_bucket',
      'end_to_end_seconds_bucket',
      'retries_total',
      'dead_letters_total',
      'fallbacks_total',
      'ready',
      'source_connected',
      'sink_connected',
      'process_resident_memory_bytes',
    ];
    for (const m of wanted) expect(used, PREFIX + m).toContain(PREFIX + m);
  });
});

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
function headingAnchors(markdown: string): Set<string> {
  const anchors = new Set<string>();
  const seen = new Map<string, number>();
  let fenced = false;
  for (const line of markdown.split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) fenced = !fenced;
    if (fenced) continue;
    const m = /^#{1,6}\s+(.+?)\s*#*\s*$/.exec(line);
    if (m === null) continue;
    const base = m[1]!
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}

describe('docs/operations.md', () => {
  const markdown = readFileSync(OPERATIONS, 'utf8');
  const anchors = headingAnchors(markdown);

  it('has a section for every runbook and every link into it from deploy/', () => {
    const links = deployFiles.flatMap((file) =>
      [...readFileSync(file, 'utf8').matchAll(/operations\.md#([A-Za-z0-9_-]+)/g)].map((m) => [rel(file), m[1]!] as const),
    );
    expect(links.length).toBeGreaterThan(0);
    for (const [file, anchor] of links) expect(anchors, `${file} links to #${anchor}`).toContain(anchor);
  });

  it('has a section for every alert, under its name', () => {
    const alertsText = readFileSync(join(DEPLOY, 'prometheus', 'alerts.yaml'), 'utf8');
    const runbooks = [...alertsText.matchAll(/runbook_url: docs\/operations\.md#([a-z0-9-]+)/g)].map((m) => m[1]!);
    expect(runbooks.length).toBeGreaterThan(0);
    for (const anchor of runbooks) expect(anchors).toContain(anchor);
  });

  it('links only to its own headings and to files that exist', () => {
    for (const m of markdown.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1]!;
      if (/^[a-z]+:/.test(target)) continue;
      const [path, anchor] = target.split('#') as [string, string | undefined];
      if (path === '') {
        expect(anchors, `#${anchor}`).toContain(anchor);
        continue;
      }
      const file = resolve(dirname(OPERATIONS), path);
      expect(existsSync(file), `${target} exists`).toBe(true);
      if (anchor !== undefined && statSync(file).isFile() && file.endsWith('.md')) {
        expect(headingAnchors(readFileSync(file, 'utf8')), target).toContain(anchor);
      }
    }
  });
});

describe('Dockerfile and docker-compose.yml', () => {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  // The example config as the image runs it: HTTP_PORT unset, so its default applies.
  let port = 0;
  let healthUrl = '';
  beforeAll(async () => {
    const loaded = await loadConfig(join(ROOT, 'cdc-invalidator.yaml'), { DATABASE_URL: 'postgres://db/app' });
    port = loaded.config.http.port;
    healthUrl = `http://127.0.0.1:${port}/healthz`;
    expect(port).toBe(9464);
  });

  it('the image checks /healthz on the port of the config it ships, with node', () => {
    const healthcheck = /^HEALTHCHECK\s.*\bCMD\s+(\[.*\])\s*$/m.exec(dockerfile);
    expect(healthcheck, 'a HEALTHCHECK in exec form').not.toBeNull();
    const command = JSON.parse(healthcheck![1]!) as string[];
    expect(command[0]).toBe('node');
    expect(command.join(' ')).toContain(healthUrl);
    expect(dockerfile).toMatch(new RegExp(`^EXPOSE ${port}$`, 'm'));
  });

  it('compose publishes the port and checks /healthz', () => {
    const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8')) as {
      services: Record<string, { ports?: string[]; healthcheck?: { test?: string[] } }>;
    };
    const worker = compose.services['worker']!;
    expect(worker.ports?.map((p) => p.split(':').at(-1))).toContain(String(port));
    expect(worker.healthcheck?.test?.join(' ')).toContain(healthUrl);
  });
});

/**
 * The metrics, the alert rules and the Grafana dashboard checked with promtool (built by install-tools.sh) on a
 * live scrape: a pair of sidecars with traffic of every kind (2xx, 4xx, 5xx, denials, RPC, messages, a failed
 * handshake, dropped spans), whose /metrics passes `promtool check metrics`; the rules pass `promtool check rules`
 * and their unit tests; and each dashboard query runs through `promtool test rules` on series made of two real
 * scrapes, and returns data (absent() of it is empty), except the one panel this run cannot feed (see MAY_BE_EMPTY).
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { eventually } from '../helpers/wait.js';
import { type App, metricValue, type Pair, startApp, startPair } from '../sidecar/helpers.js';
import { findTool, inCI, repoRoot, run, whyMissing } from './tools.js';

const missing = whyMissing(['promtool']);
const DIR = path.join(repoRoot, 'deploy/observability');

/**
 * Queries whose series this run does not make, and why: a reconnect needs an upstream connection lost and
 * found again (test/sidecar/operations.test.ts does that; it is not repeated here).
 */
const MAY_BE_EMPTY = [/geminio_upstream_reconnects_total/];

interface Dashboard {
  panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
}

/** The geminio_ samples of a scrape, by series (name and labels as written). */
function samples(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('geminio_')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), line.slice(at + 1));
  }
  return out;
}

async function traffic(pair: Pair): Promise<void> {
  const calls: Array<[string, string, string?]> = [
    ['/ok', 'GET'],
    ['/missing-is-fine', 'GET'],
    ['/forbidden', 'GET'],
    ['/rpc/hello', 'POST', 'x'],
    ['/rpc/broken', 'POST', 'x'],
    ['/publish/orders', 'POST', 'm'],
  ];
  for (const [p, method, body] of calls)
    await (await request(`${pair.web}${p}`, { method, body })).body.text();
}

describe.skipIf(missing !== undefined && !inCI)('metrics, alert rules and dashboard under promtool', () => {
  let app: App;
  let pair: Pair;
  let promtool: string;
  const scrapes: string[] = [];

  beforeAll(async () => {
    promtool = findTool('promtool')!;
    app = await startApp(1024);
    pair = await startPair(app, undefined, {
      inboundSection: {
        rpc: { hello: { url: `${app.url}/echo` }, broken: { url: `${app.url}/rpc-fail` } },
        messages: { webhook: `${app.url}/webhook` },
      },
      outbound: {
        tracing: { enabled: true, endpoint: 'http://127.0.0.1:1/v1/traces', scheduledDelayMs: 50 },
      },
      outboundHooks: [
        (point, facts) =>
          point === 'request' && facts.path === '/forbidden' ? { allow: false, reason: 'no' } : undefined,
      ],
    });
    // A client that is not a geminio End: a failed handshake.
    await new Promise<void>((resolve) => {
      const s = net.connect(pair.geminioPort, '127.0.0.1', () => s.end('GET / HTTP/1.1\r\n\r\n'));
      s.on('close', () => resolve());
      s.on('error', () => resolve());
    });
    await eventually(async () => (await metricValue(pair.inbound, 'geminio_handshake_failures_total')) > 0);
    await traffic(pair);
    await eventually(async () => (await metricValue(pair.outbound, 'geminio_trace_spans_dropped_total')) > 0);
    scrapes.push(
      (await pair.outbound.metrics.registry.metrics()) + (await pair.inbound.metrics.registry.metrics()),
    );
    await traffic(pair);
    scrapes.push(
      (await pair.outbound.metrics.registry.metrics()) + (await pair.inbound.metrics.registry.metrics()),
    );
  }, 60_000);
  afterAll(async () => {
    await pair?.close();
    await app?.close();
  });

  it('has promtool', () => expect(missing).toBeUndefined());

  it('promtool check metrics passes on a live scrape of each sidecar', async () => {
    for (const s of [pair.outbound, pair.inbound]) {
      const admin = `http://127.0.0.1:${s.admin!.address().port}/metrics`;
      const text = await (await fetch(admin)).text();
      // The geminio_ families: no finding at all.
      const ours = text
        .split('\n\n')
        .filter((family) => /^# HELP geminio_/.test(family))
        .join('\n\n');
      expect(ours).toContain('geminio_http_requests_total');
      const r = run(promtool, ['check', 'metrics'], { input: `${ours}\n` });
      expect(r.out).toBe('');
      expect(r.status).toBe(0);
      // The whole scrape: only what prom-client's default Node metrics are known for (gauges named _total).
      const all = run(promtool, ['check', 'metrics'], { input: text });
      const findings = all.out.split('\n').filter((l) => l.trim() !== '');
      expect(
        findings.filter((l) => !/^nodejs_active_(handles|requests|resources)_total non-counter/.test(l)),
      ).toEqual([]);
    }
  });

  it('the alert rules pass promtool check rules and their unit tests', () => {
    const check = run(promtool, ['check', 'rules', path.join(DIR, 'alerts.yaml')]);
    expect(check.status, check.out).toBe(0);
    const test = run(promtool, ['test', 'rules', 'alerts.test.yaml'], { cwd: DIR });
    expect(test.status, test.out).toBe(0);
  });

  it('each dashboard query is valid PromQL and returns data on the live series', () => {
    const dash = JSON.parse(readFileSync(path.join(DIR, 'grafana-dashboard.json'), 'utf8')) as Dashboard;
    const exprs = dash.panels.flatMap((p) => p.targets.map((t) => t.expr));
    expect(exprs.length).toBeGreaterThan(15);
    // Grafana's variables as Grafana would expand them: every listener, a 5 minute rate window.
    const queries = exprs.map((e) => e.replaceAll('$__rate_interval', '5m').replaceAll('$listener', '.*'));
    // Two scrapes one (synthetic) minute apart, then flat: a rate over 5m at minute 5 sees the traffic between.
    const [first, second] = scrapes.map(samples) as [Map<string, string>, Map<string, string>];
    const input_series = [...second].map(([series, v2]) => ({
      series,
      values: `${first.get(series) ?? v2} ${Array(5).fill(v2).join(' ')}`,
    }));
    const dir = mkdtempSync(path.join(os.tmpdir(), 'dashboard-'));
    // Valid PromQL, each: as recording rules, checked by promtool.
    writeFileSync(
      path.join(dir, 'dashboard-rules.yaml'),
      stringify({
        groups: [
          { name: 'dashboard', rules: queries.map((expr, i) => ({ record: `dashboard:q${i}`, expr })) },
        ],
      }),
    );
    const check = run(promtool, ['check', 'rules', 'dashboard-rules.yaml'], { cwd: dir });
    expect(check.status, check.out).toBe(0);
    // And data, each: absent(query) is empty on the live series.
    const wanted = queries.filter((q) => !MAY_BE_EMPTY.some((re) => re.test(q)));
    expect(wanted.length).toBe(queries.length - 1);
    writeFileSync(
      path.join(dir, 'dashboard.test.yaml'),
      stringify({
        rule_files: ['dashboard-rules.yaml'],
        evaluation_interval: '1m',
        tests: [
          {
            interval: '1m',
            input_series,
            promql_expr_test: wanted.map((q) => ({ expr: `absent(${q})`, eval_time: '5m', exp_samples: [] })),
          },
        ],
      }),
    );
    const test = run(promtool, ['test', 'rules', 'dashboard.test.yaml'], { cwd: dir });
    expect(test.status, test.out).toBe(0);
    // The check can fail: a query on a metric nobody exports has no data.
    writeFileSync(
      path.join(dir, 'negative.test.yaml'),
      stringify({
        rule_files: [],
        tests: [
          {
            interval: '1m',
            input_series,
            promql_expr_test: [
              { expr: 'absent(rate(geminio_no_such_metric_total[5m]))', eval_time: '5m', exp_samples: [] },
            ],
          },
        ],
      }),
    );
    expect(run(promtool, ['test', 'rules', 'negative.test.yaml'], { cwd: dir }).status).not.toBe(0);
  });
});

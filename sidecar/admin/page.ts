/**
 * The admin port's page at `/`: the mesh as this sidecar sees it (upstreams with their ClientID, reconnects and
 * last error, listeners, services and their targets, the inbound Ends with their ClientIDs, open streams by
 * service), rendered on the server from the same data as /debug/ends: plain HTML, no script, every value escaped.
 */

export interface DebugEnds {
  name: string;
  upstreams: Array<{
    name: string;
    address: string | null;
    state: string;
    clientId: string | null;
    reconnects: number;
    lastError: { message: string; at: string } | null;
    streamsByService: Record<string, number>;
    streams: Array<{ streamId: string; meta: string }>;
  }>;
  listeners: Array<{ name: string; kind: string; listen?: string; service?: string; upstream?: string }>;
  services: Array<{ name: string; target: string }>;
  inbound: Array<{
    clientId: string;
    name: string | null;
    meta: string;
    remoteAddress: string | null;
    state: string;
    connectedAt: string;
    streamsByService: Record<string, number>;
    streams: Array<{ streamId: string; meta: string }>;
  }>;
  inflight: number;
}

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

export function escapeHtml(v: unknown): string {
  return String(v ?? '').replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
}

function table(id: string, title: string, head: string[], rows: unknown[][]): string {
  const th = head.map((h) => `<th>${escapeHtml(h)}</th>`).join('');
  const body =
    rows.length === 0
      ? `<tr><td colspan="${head.length}" class="none">none</td></tr>`
      : rows.map((r) => `<tr>${r.map((c) => `<td>${escapeHtml(c)}</td>`).join('')}</tr>`).join('\n');
  return `<h2>${escapeHtml(title)}</h2>\n<table id="${id}"><thead><tr>${th}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

const streamsText = (s: Record<string, number>) =>
  Object.entries(s)
    .map(([k, n]) => `${k}: ${n}`)
    .join(', ') || '0';

export function renderPage(d: DebugEnds): string {
  const sections = [
    table(
      'upstreams',
      'Upstreams',
      ['name', 'address', 'state', 'ClientID', 'reconnects', 'last error', 'open streams by service'],
      d.upstreams.map((u) => [
        u.name,
        u.address,
        u.state,
        u.clientId ?? '',
        u.reconnects,
        u.lastError ? `${u.lastError.at} ${u.lastError.message}` : '',
        streamsText(u.streamsByService),
      ]),
    ),
    table(
      'listeners',
      'Listeners',
      ['name', 'kind', 'listen', 'service', 'upstream'],
      d.listeners.map((l) => [l.name, l.kind, l.listen ?? '', l.service ?? '', l.upstream ?? '']),
    ),
    table(
      'services',
      'Services (endpoints)',
      ['name', 'target'],
      d.services.map((s) => [s.name, s.target]),
    ),
    table(
      'ends',
      'Inbound Ends',
      ['ClientID', 'name', 'remote address', 'state', 'connected at', 'open streams by service'],
      d.inbound.map((e) => [
        e.clientId,
        e.name ?? '',
        e.remoteAddress ?? '',
        e.state,
        e.connectedAt,
        streamsText(e.streamsByService),
      ]),
    ),
  ];
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>geminio-sidecar ${escapeHtml(d.name)}</title>
<style>body{font:14px system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse;margin-bottom:1.5em}
th,td{border:1px solid #bbb;padding:.3em .6em;text-align:left}th{background:#eee}.none{color:#888}</style></head>
<body><h1>geminio-sidecar <span id="name">${escapeHtml(d.name)}</span></h1>
<p>Work in flight: ${d.inflight}. JSON: <a href="/debug/ends">/debug/ends</a>, metrics: <a href="/metrics">/metrics</a>.</p>
${sections.join('\n')}
</body></html>
`;
}

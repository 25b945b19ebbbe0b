/**
 * The inbound side: a geminio listener (TCP or TLS) that accepts Ends from remote sidecars and geminio clients.
 * Streams they open go through the service table; RPC methods from the config are registered on every End and
 * forward the call body to a local HTTP endpoint; messages are POSTed to the configured webhook. Connected Ends are
 * kept by ClientID and by name, for /debug/ends and for reverse tunnels.
 *
 * ClientIDs are assigned here: a fresh one for every connection, unless an authorization plugin approves another
 * (a proposed one, or one it derives from a verified identity). The SDK's own resume of proposed ClientIDs is
 * never reached, since the connect hook always returns a ClientID. The ClientID and name decided at connect are
 * recorded (../policy/identities.ts, ./identity.ts) and are what every later decision about the End sees.
 */
import { type End, type Listener, listen, type RpcRequest } from '../../sdk/index.js';
import type { InboundConfig } from '../config/schema.js';
import type { ConfigProblem } from '../config/validate.js';
import { materialKey, readTlsMaterial, serverTls, type TlsMaterial } from '../net/tls.js';
import { Agent, request } from '../net/undici.js';
import type { Logger } from '../observe/logger.js';
import { handshakeReason, type Metrics } from '../observe/metrics.js';
import { parseCarrier, type Tracing } from '../observe/tracing.js';
import type { HookRunner } from '../policy/hooks.js';
import type { Identities, Identity } from '../policy/identities.js';
import type { Inflight } from '../proxy/inflight.js';
import { announcedName, freshClientId, nameRefusal } from './identity.js';
import type { ServiceRouter } from './router.js';

export interface InboundDeps {
  metrics: Metrics;
  logger: Logger;
  hooks: HookRunner;
  /** The identity records of inbound Ends, which the hook runner reads for every later decision. */
  identities: Identities;
  inflight: Inflight;
  tracing: Tracing;
  /** The current service table (a reload may swap it). */
  router: () => ServiceRouter;
}

export interface ConnectedEnd {
  end: End;
  name: string | undefined;
  connectedAt: Date;
}

export class InboundListener {
  readonly ends = new Map<bigint, ConnectedEnd>();
  private listener: Listener | undefined;
  private readonly agent: Agent;
  private readonly log: Logger;
  readonly key: string;
  private material: TlsMaterial = {};

  constructor(
    readonly config: InboundConfig,
    private readonly deps: InboundDeps,
  ) {
    this.key = JSON.stringify(config);
    this.log = deps.logger.child({ listener: 'inbound' });
    this.agent = new Agent({ connections: 64 });
  }

  async start(): Promise<void> {
    const registerLocalRpcs = Object.fromEntries(
      Object.entries(this.config.rpc).map(([method, target]) => [
        method,
        (r: RpcRequest) => this.callLocal(method, target, r),
      ]),
    );
    const { material, problems } = readTlsMaterial(this.config.tls, 'inbound.tls');
    if (problems.length > 0) throw new Error(`inbound TLS files: ${problems.map((p) => p.path).join(', ')}`);
    this.material = material;
    this.listener = await listen(this.config.listen, {
      tls: serverTls(this.config.tls, material),
      endBacklog: this.config.maxPendingEnds,
      registerLocalRpcs,
      acceptHalfOpen: (meta) => this.deps.router().halfOpen(meta),
      onConnect: async (info) => {
        // A reconnecting sidecar that proved the ClientID it proposes is its own (the SDK checked the resume
        // secret this listener gave it) keeps it; any other proposal is only a fact for the plugins to judge.
        const fresh = info.resumeVerified ? info.proposedClientId : freshClientId(this.deps.identities);
        const peer = announcedName(info.meta);
        const d = await this.deps.hooks.decide('connect', {
          clientId: String(fresh),
          proposedClientId: info.proposedClientId ? String(info.proposedClientId) : undefined,
          peer,
          meta: info.meta,
          remoteAddress: info.remoteAddress,
          peerCertificate: info.peerCertificate,
          peerVerified:
            this.config.tls.enabled && this.config.tls.requestCert && this.config.tls.rejectUnauthorized,
          direction: 'inbound',
        });
        if (!d.allow) throw new Error(d.reason);
        const clientId = d.clientId !== undefined ? BigInt(d.clientId) : fresh;
        const name = d.name ?? peer;
        const refusal =
          name === undefined
            ? undefined
            : nameRefusal(
                this.config.names,
                this.deps.identities,
                name,
                String(clientId),
                d.name !== undefined,
              );
        if (refusal) {
          this.deps.metrics.inboundNameRefusals.inc();
          this.log.warn(
            { clientId: String(clientId), peer: name, remoteAddress: info.remoteAddress },
            refusal,
          );
          throw new Error(refusal);
        }
        this.deps.identities.remember({ clientId: String(clientId), name });
        return clientId;
      },
    });
    this.listener.on('handshakeError', (err: Error, addr: string | undefined) => {
      this.deps.metrics.handshakeFailures.inc({ side: 'inbound', reason: handshakeReason(err) });
      this.log.debug({ err: err.message, remoteAddress: addr }, 'handshake failed');
    });
    this.log.info({ listen: this.config.listen, tls: this.config.tls.enabled }, 'geminio listener started');
    void this.acceptLoop(this.listener);
  }

  /**
   * Reads the certificate, key and CA files again; a valid new set serves the handshakes to come (connected Ends
   * keep their session), an invalid one is refused and the running set stays. Returns the problems (none: ok).
   */
  reloadTls(): { problems: ConfigProblem[]; changed: boolean } {
    if (!this.config.tls.enabled || !this.listener) return { problems: [], changed: false };
    const { material, problems } = readTlsMaterial(this.config.tls, 'inbound.tls');
    if (problems.length > 0) return { problems, changed: false };
    if (materialKey(material) === materialKey(this.material)) return { problems, changed: false };
    this.listener.setSecureContext(material);
    this.material = material;
    return { problems, changed: true };
  }

  address(): { host: string; port: number } | undefined {
    return this.listener?.address();
  }

  /** The End of a connected client, by the name it announced or its ClientID (the most recent one wins). */
  find(by: { name?: string; clientId?: string }): End | undefined {
    let found: ConnectedEnd | undefined;
    for (const c of this.ends.values()) {
      if (c.end.state !== 'connected') continue;
      if (by.clientId !== undefined && String(c.end.clientId) === by.clientId) return c.end;
      if (by.name !== undefined && c.name === by.name && (!found || c.connectedAt >= found.connectedAt))
        found = c;
    }
    return found?.end;
  }

  private async acceptLoop(listener: Listener): Promise<void> {
    for await (const end of listener) this.adopt(end);
  }

  private adopt(end: End): void {
    const clientId = String(end.clientId);
    const identity = this.deps.identities.bind(clientId, end);
    if (!identity) {
      // Cannot happen through onConnect; if it ever does, the End is refused rather than let through unchecked.
      this.log.error({ clientId }, 'end without a connect decision; closing it');
      end.destroy();
      return;
    }
    const name = identity.name;
    const log = this.log.child({ clientId, peer: name });
    this.ends.set(end.clientId, { end, name, connectedAt: new Date() });
    this.deps.metrics.inboundEnds.set(this.ends.size);
    log.info({ remoteAddress: end.remoteAddress }, 'end connected');
    end.on('error', (err: Error) => log.debug({ err: err.message }, 'end error'));
    end.once('close', () => {
      this.deps.identities.release(clientId, end);
      if (this.ends.get(end.clientId)?.end === end) this.ends.delete(end.clientId);
      this.deps.metrics.inboundEnds.set(this.ends.size);
      log.info({ err: end.closeError?.message }, 'end closed');
    });
    void (async () => {
      for await (const stream of end.streams()) {
        this.deps
          .router()
          .dispatch(stream, end, 'inbound')
          .catch((err: Error) => log.debug({ err: err.message }, 'dispatch failed'));
      }
    })().catch(() => {});
    if (this.config.messages) void this.deliverMessages(end, identity, log);
    else void this.refuseMessages(end);
  }

  /** An RPC method from the config: POST the call body to the local URL, its 2xx body is the result. */
  private async callLocal(
    method: string,
    target: InboundConfig['rpc'][string],
    r: RpcRequest,
  ): Promise<Buffer> {
    const ids = { clientId: String(r.clientId), streamId: String(r.streamId) };
    const done = this.deps.inflight.begin();
    const stop = this.deps.metrics.rpcDuration.startTimer({ direction: 'inbound', method });
    let outcome = 'ok';
    const span = this.deps.tracing.start(`rpc ${method}`, 'server', parseCarrier(r.custom), {
      'rpc.method': method,
      'geminio.direction': 'inbound',
      'geminio.client_id': ids.clientId,
      'geminio.stream_id': ids.streamId,
      'geminio.upstream': target.url,
    });
    try {
      const d = await this.deps.hooks.decide('rpc', { ...ids, method, direction: 'inbound' });
      span?.set({ 'geminio.authz.decision': d.allow ? 'allow' : 'deny' });
      if (!d.allow) {
        outcome = 'denied';
        throw new Error(`denied: ${d.reason}`);
      }
      const res = await request(target.url, {
        method: 'POST',
        body: r.data,
        dispatcher: this.agent,
        signal: r.signal,
        headersTimeout: target.timeoutMs,
        bodyTimeout: target.timeoutMs,
        headers: {
          'content-type': 'application/octet-stream',
          'x-geminio-client-id': ids.clientId,
          'x-geminio-method': method,
          ...span?.carrier(),
        },
      });
      const body = Buffer.from(await res.body.arrayBuffer());
      if (body.length > target.maxBodyBytes)
        throw new Error(`answer larger than ${target.maxBodyBytes} bytes`);
      if (res.statusCode < 200 || res.statusCode > 299) {
        outcome = 'remote_error';
        throw new Error(body.length > 0 ? body.toString('utf8') : `HTTP ${res.statusCode}`);
      }
      return body;
    } catch (err) {
      if (outcome === 'ok') outcome = 'error';
      throw err;
    } finally {
      stop();
      done();
      span?.set({ 'geminio.outcome': outcome });
      span?.end(outcome === 'ok' ? undefined : outcome);
      this.deps.metrics.rpcCalls.inc({ direction: 'inbound', method, outcome });
    }
  }

  /** Messages from an End: POST each to the webhook; 2xx acks it, anything else acks with the error text. */
  private async deliverMessages(end: End, identity: Identity, log: Logger): Promise<void> {
    const hook = this.config.messages!;
    let running = 0;
    const slots: Array<() => void> = [];
    try {
      for await (const m of end.messages()) {
        const d = await this.deps.hooks.decide('message', {
          clientId: String(m.clientId),
          streamId: String(m.streamId),
          topic: m.topic,
          direction: 'inbound',
          // Decided by this End's identity even once it closed: its record is gone then, but what it received
          // before is still its own (a denial here would also be what its replay on the next connection gets).
          identity,
        });
        if (!d.allow) {
          m.error(`denied: ${d.reason}`);
          this.deps.metrics.messages.inc({ direction: 'inbound', listener: 'inbound', outcome: 'denied' });
          continue;
        }
        if (running >= hook.concurrency) await new Promise<void>((r) => slots.push(r));
        running++;
        const done = this.deps.inflight.begin();
        this.deps.metrics.messagesInFlight.inc({ direction: 'inbound' });
        const headers: Record<string, string> = {
          'content-type': 'application/octet-stream',
          'x-geminio-client-id': String(m.clientId),
          'x-geminio-message-id': String(m.id),
        };
        if (m.topic !== undefined) headers['x-geminio-topic'] = m.topic;
        const span = this.deps.tracing.start('message', 'consumer', parseCarrier(m.custom), {
          'messaging.destination.name': m.topic,
          'geminio.direction': 'inbound',
          'geminio.client_id': String(m.clientId),
          'geminio.stream_id': String(m.streamId),
          'geminio.upstream': hook.webhook,
          'geminio.authz.decision': 'allow',
        });
        Object.assign(headers, span?.carrier());
        request(hook.webhook, {
          method: 'POST',
          body: m.data,
          headers,
          dispatcher: this.agent,
          headersTimeout: hook.timeoutMs,
          bodyTimeout: hook.timeoutMs,
        })
          .then(async (res) => {
            const text = await res.body.text();
            if (res.statusCode >= 200 && res.statusCode <= 299) {
              m.done();
              this.deps.metrics.messages.inc({
                direction: 'inbound',
                listener: 'inbound',
                outcome: 'delivered',
              });
            } else {
              m.error(`webhook answered ${res.statusCode}${text ? `: ${text.slice(0, 512)}` : ''}`);
              this.deps.metrics.messages.inc({
                direction: 'inbound',
                listener: 'inbound',
                outcome: 'failed',
              });
            }
          })
          .catch((err: Error) => {
            m.error(`webhook failed: ${err.message}`);
            this.deps.metrics.messages.inc({ direction: 'inbound', listener: 'inbound', outcome: 'failed' });
          })
          .finally(() => {
            this.deps.metrics.messagesInFlight.dec({ direction: 'inbound' });
            span?.end();
            running--;
            slots.shift()?.();
            done();
          });
      }
    } catch (err) {
      log.debug({ err: (err as Error).message }, 'message loop ended');
    }
  }

  // Without a webhook nobody would ever acknowledge: refuse at once so publishers fail fast instead of timing out.
  private async refuseMessages(end: End): Promise<void> {
    try {
      for await (const m of end.messages()) {
        m.error('no message webhook is configured on this sidecar');
        this.deps.metrics.messages.inc({ direction: 'inbound', listener: 'inbound', outcome: 'refused' });
      }
    } catch {
      // the End closed
    }
  }

  /** Stops accepting new Ends; connected ones stay until close(). */
  async stopAccepting(): Promise<void> {
    await this.listener?.close();
  }

  /** Closes every connected End gracefully, then the HTTP agent. */
  async close(): Promise<void> {
    await this.stopAccepting();
    await Promise.all([...this.ends.values()].map((c) => c.end.close().catch(() => {})));
    await this.agent.close();
  }

  destroy(): void {
    void this.listener?.close();
    for (const c of this.ends.values()) c.end.destroy();
    this.agent.destroy().catch(() => {});
  }
}

/**
 * RPC and messaging of one stream over a StreamPort. Raw bytes are the stream core's.
 */
import type { GeminioError } from '../errors.js';
import { PacketType as T } from '../frame/constants.js';
import type { Packet } from '../frame/packet.js';
import { Messenger } from './messaging.js';
import type { StreamPort } from './port.js';
import { RpcEndpoint } from './rpc.js';

export class Channel {
  readonly rpc: RpcEndpoint;
  readonly messaging: Messenger;

  constructor(readonly port: StreamPort) {
    this.rpc = new RpcEndpoint(port);
    this.messaging = new Messenger(port);
  }

  handlePacket(p: Packet): void {
    if (p.type === T.Message || p.type === T.MessageAck) this.messaging.handlePacket(p);
    else this.rpc.handlePacket(p);
  }

  close(err: GeminioError): void {
    this.rpc.close(err);
    this.messaging.close(err);
  }
}

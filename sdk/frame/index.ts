export * from './constants.js';
export { DEFAULT_MAX_PACKET_LENGTH, decodeBody, FrameDecoder } from './decode.js';
export { encodePacket, encodeStreamHeader } from './encode.js';
export type * from './packet.js';

// One connection to one memcached server, speaking the meta protocol (memcached 1.6+): commands are
// pipelined (written together, answered in order) and every reply is handed back to be checked. No
// retries, no offline queue: a request on a broken connection fails at once, a request that times out
// closes the connection (what it did is unknown), and the caller decides what to retry.
import { connect as connectTcp, type Socket } from 'node:net';

/** One meta command: `mg`, `ms`, `md`, `ma`, `mn`, or `version`. */
export interface MetaCommand {
  verb: 'mg' | 'ms' | 'md' | 'ma' | 'mn' | 'version';
  key?: string;
  /** Flags and tokens after the key, e.g. ['v', 'c', 'T30']. */
  flags?: readonly string[];
  /** The value of an `ms`. */
  value?: Buffer;
}

/**
 * A reply: its code (HD, NF, NS, EX, EN, VA, MN, VERSION), its flags (`c123`, `W`...) and, for VA, the
 * value. A server error (ERROR, CLIENT_ERROR, SERVER_ERROR) is a reply too, with `error` set: one bad
 * command must not hide the answers to the others.
 */
export interface MetaReply {
  code: string;
  flags: string[];
  value?: Buffer;
  error?: string;
}

/** The connection failed, or a request on it did: nothing is known of the requests it carried. */
export class MetaConnectionError extends Error {
  override name = 'MetaConnectionError';
}

export interface MetaConnectionOptions {
  host: string;
  port: number;
  /** How long a request may wait for its replies (and a connect for the socket). */
  timeoutMs: number;
}

interface Pending {
  expected: number;
  replies: MetaReply[];
  resolve: (replies: MetaReply[]) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

const CRLF = Buffer.from('\r\n');
/** memcached's limit on a key, in bytes. */
export const MAX_KEY_BYTES = 250;

export class MetaConnection {
  readonly #options: MetaConnectionOptions;
  #socket: Socket | null = null;
  #connecting: Promise<Socket> | null = null;
  #buffer: Buffer = Buffer.alloc(0);
  readonly #pending: Pending[] = [];

  constructor(options: MetaConnectionOptions) {
    this.#options = options;
  }

  get address(): string {
    return `${this.#options.host}:${this.#options.port}`;
  }

  get connected(): boolean {
    return this.#socket !== null;
  }

  /** Connects when not connected; concurrent callers share one attempt. */
  async connect(): Promise<void> {
    await this.#connected();
  }

  /** Sends the commands in one write and resolves with their replies, in order. */
  async request(commands: readonly MetaCommand[]): Promise<MetaReply[]> {
    if (commands.length === 0) return [];
    const socket = await this.#connected();
    const payload = Buffer.concat(commands.flatMap(encode));
    return await new Promise<MetaReply[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#fail(new MetaConnectionError(`memcached ${this.address} did not answer within ${this.#options.timeoutMs} ms`));
      }, this.#options.timeoutMs);
      this.#pending.push({ expected: commands.length, replies: [], resolve, reject, timer });
      socket.write(payload);
    });
  }

  close(): void {
    this.#fail(new MetaConnectionError(`memcached ${this.address}: connection closed`));
  }

  async #connected(): Promise<Socket> {
    if (this.#socket !== null) return this.#socket;
    this.#connecting ??= new Promise<Socket>((resolve, reject) => {
      const socket = connectTcp({ host: this.#options.host, port: this.#options.port });
      socket.setNoDelay(true);
      const timer = setTimeout(() => socket.destroy(new Error(`connect timed out after ${this.#options.timeoutMs} ms`)), this.#options.timeoutMs);
      const failed = (err: Error) => {
        clearTimeout(timer);
        this.#connecting = null;
        reject(new MetaConnectionError(`memcached ${this.address} unreachable: ${err.message}`, { cause: err }));
      };
      socket.once('error', failed);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', failed);
        this.#socket = socket;
        this.#connecting = null;
        this.#buffer = Buffer.alloc(0);
        // A connection given up (a timeout) must not hand its late replies to the requests of the next one.
        socket.on('data', (chunk: Buffer) => {
          if (socket === this.#socket) this.#onData(chunk);
        });
        socket.on('error', (err) => this.#fail(new MetaConnectionError(`memcached ${this.address}: ${err.message}`, { cause: err }), socket));
        socket.on('close', () => this.#fail(new MetaConnectionError(`memcached ${this.address} closed the connection`), socket));
        resolve(socket);
      });
    });
    return await this.#connecting;
  }

  /** Drops the connection and fails every request on it. */
  #fail(err: Error, socket: Socket | null = this.#socket): void {
    if (socket !== null && socket !== this.#socket) return;
    this.#socket?.destroy();
    this.#socket = null;
    this.#buffer = Buffer.alloc(0);
    for (const pending of this.#pending.splice(0)) {
      clearTimeout(pending.timer);
      pending.reject(err);
    }
  }

  #onData(chunk: Buffer): void {
    this.#buffer = this.#buffer.length === 0 ? chunk : Buffer.concat([this.#buffer, chunk]);
    for (;;) {
      const parsed = parseReply(this.#buffer);
      if (parsed === null) return;
      this.#buffer = this.#buffer.subarray(parsed.length);
      const pending = this.#pending[0];
      if (pending === undefined) {
        this.#fail(new MetaConnectionError(`memcached ${this.address} sent a reply nobody asked for: ${parsed.reply.code}`));
        return;
      }
      pending.replies.push(parsed.reply);
      if (pending.replies.length === pending.expected) {
        this.#pending.shift();
        clearTimeout(pending.timer);
        pending.resolve(pending.replies);
      }
    }
  }
}

/**
 * A key as the meta protocol takes it: as is when it is printable ASCII without spaces, else base64
 * with the `b` flag (which the server decodes). Undefined for a key longer than memcached allows,
 * which nothing can be stored under.
 */
export function encodeKey(key: string): { token: string; base64: boolean } | undefined {
  if (!storableKey(key)) return undefined;
  const bytes = Buffer.from(key, 'utf8');
  const plain = bytes.every((b) => b > 0x20 && b < 0x7f);
  return plain ? { token: key, base64: false } : { token: bytes.toString('base64'), base64: true };
}

/** Whether memcached can hold anything under `key` (1 to 250 bytes), without encoding it. */
export function storableKey(key: string): boolean {
  const length = Buffer.byteLength(key, 'utf8');
  return length > 0 && length <= MAX_KEY_BYTES;
}

/** The bytes of one command. */
export function encode(command: MetaCommand): Buffer[] {
  if (command.verb === 'mn' || command.verb === 'version') return [Buffer.from(`${command.verb}\r\n`)];
  const key = command.key === undefined ? undefined : encodeKey(command.key);
  if (key === undefined) throw new Error(`not a memcached key: ${JSON.stringify(command.key)}`);
  const flags = [...(command.flags ?? []), ...(key.base64 ? ['b'] : [])];
  if (command.verb === 'ms') {
    const value = command.value ?? Buffer.alloc(0);
    return [Buffer.from(`ms ${key.token} ${value.length}${flags.length > 0 ? ` ${flags.join(' ')}` : ''}\r\n`), value, CRLF];
  }
  return [Buffer.from(`${command.verb} ${key.token}${flags.length > 0 ? ` ${flags.join(' ')}` : ''}\r\n`)];
}

/** One reply from the start of `buffer`, with its length in bytes; null when it is not all there yet. */
export function parseReply(buffer: Buffer): { reply: MetaReply; length: number } | null {
  const eol = buffer.indexOf(CRLF);
  if (eol < 0) return null;
  const line = buffer.subarray(0, eol).toString('latin1');
  const [code = '', ...rest] = line.split(' ');
  if (code === 'ERROR' || code === 'CLIENT_ERROR' || code === 'SERVER_ERROR') {
    return { reply: { code, flags: [], error: line }, length: eol + 2 };
  }
  if (code === 'VERSION') return { reply: { code, flags: rest }, length: eol + 2 };
  if (code === 'VA') {
    const size = Number(rest[0]);
    if (!Number.isInteger(size) || size < 0) return { reply: { code: 'ERROR', flags: [], error: `bad VA line: ${line}` }, length: eol + 2 };
    const end = eol + 2 + size + 2;
    if (buffer.length < end) return null;
    return { reply: { code, flags: rest.slice(1), value: Buffer.from(buffer.subarray(eol + 2, eol + 2 + size)) }, length: end };
  }
  return { reply: { code, flags: rest }, length: eol + 2 };
}

/** The token of a reply flag (`c123` -> '123' for 'c'), or undefined. */
export function replyFlag(reply: MetaReply, flag: string): string | undefined {
  const found = reply.flags.find((f) => f.startsWith(flag));
  return found === undefined ? undefined : found.slice(flag.length);
}

// Which memcached server holds a key: libketama's consistent hashing, as common memcached clients do
// it (libmemcached's and spymemcached's ketama modes, Node's hashring), so that an application and the
// worker agree on the server of every key when they list the same servers. For each server, named
// exactly as written ("host:port"), 40 MD5 digests of "<name>-<i>" give 4 points each on a 32-bit
// circle (every server weighing the same: 160 points); a key goes to the first point at or after the
// first 4 bytes of its own MD5 (little-endian), wrapping round to the lowest.
import { createHash } from 'node:crypto';

const DIGESTS_PER_SERVER = 40;
const POINTS_PER_DIGEST = 4;

export class KetamaRing {
  readonly servers: readonly string[];
  readonly #points: Uint32Array;
  readonly #owners: Uint16Array;

  constructor(servers: readonly string[]) {
    if (servers.length === 0) throw new Error('a ketama ring needs at least one server');
    if (servers.length > 0xffff) throw new Error('too many servers');
    this.servers = [...servers];
    const points: Array<[point: number, owner: number]> = [];
    servers.forEach((server, owner) => {
      for (let i = 0; i < DIGESTS_PER_SERVER; i++) {
        const digest = md5(`${server}-${i}`);
        for (let j = 0; j < POINTS_PER_DIGEST; j++) points.push([digest.readUInt32LE(j * 4), owner]);
      }
    });
    // Stable: equal points keep the order of the server list, as hashring's comparison does.
    points.sort((a, b) => a[0] - b[0]);
    this.#points = Uint32Array.from(points, ([point]) => point);
    this.#owners = Uint16Array.from(points, ([, owner]) => owner);
  }

  /** The server (as listed) that holds `key`. */
  serverFor(key: string | Buffer): string {
    return this.servers[this.indexFor(key)]!;
  }

  /** The index in `servers` of the server that holds `key`. */
  indexFor(key: string | Buffer): number {
    const hash = md5(key).readUInt32LE(0);
    // The first point at or after the hash; past the last, the first.
    let low = 0;
    let high = this.#points.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.#points[mid]! < hash) low = mid + 1;
      else high = mid;
    }
    return this.#owners[low === this.#points.length ? 0 : low]!;
  }
}

function md5(text: string | Buffer): Buffer {
  return createHash('md5').update(text).digest();
}

// memcached server addresses as clients and the config write them.

/** `host:port` (a bare host means 11211; `[v6]:port` for IPv6). */
export function splitServer(server: string): { host: string; port: number } {
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(server);
  if (v6 !== null) return { host: v6[1]!, port: v6[2] === undefined ? 11211 : Number(v6[2]) };
  const at = server.lastIndexOf(':');
  if (at < 0) return { host: server, port: 11211 };
  return { host: server.slice(0, at), port: Number(server.slice(at + 1)) };
}


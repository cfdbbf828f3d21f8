/**
 * How values are stored in Redis. `serialize` may return a string or a Buffer; `deserialize` is
 * given the stored bytes as a Buffer (binary formats need no conversion, text formats decode UTF-8).
 */
export interface Serializer {
  serialize(value: unknown): string | Buffer;
  deserialize(data: Buffer): unknown;
}

/** The default: JSON text. `undefined` cannot be stored (it means "not found"); use `null`. */
export const jsonSerializer: Serializer = {
  serialize: (value) => JSON.stringify(value),
  deserialize: (data) => JSON.parse(data.toString('utf8')) as unknown,
};

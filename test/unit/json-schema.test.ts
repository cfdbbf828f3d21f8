import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { jsonSchemas, renderJsonSchema } from '../../src/config/json-schema.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

describe('editor JSON Schemas', () => {
  it.each(Object.keys(jsonSchemas()))('schema/%s is up to date with the zod schemas (run npm run schema)', (name) => {
    const committed = readFileSync(`${root}schema/${name}`, 'utf8');
    expect(committed).toBe(renderJsonSchema(jsonSchemas()[name]));
  });

  it('refuses unknown keys, as the loader does', () => {
    const mapping = jsonSchemas()['mapping.schema.json'] as { properties: { rules: { items: { additionalProperties: unknown } } } };
    expect(mapping.properties.rules.items.additionalProperties).toBe(false);
  });

  it.each([
    ['cdc-invalidator.yaml', './schema/cdc-invalidator.schema.json'],
    ['mappings/users.yaml', '../schema/mapping.schema.json'],
    ['mappings/comments.yaml', '../schema/mapping.schema.json'],
  ])('%s points editors at its schema', (file, schema) => {
    expect(readFileSync(`${root}${file}`, 'utf8')).toContain(`# yaml-language-server: $schema=${schema}`);
  });
});

import { writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { configSchema, mappingFileSchema } from './schema.js';

/**
 * JSON Schemas for editors, generated from the same zod schemas the loader validates with, so the
 * two cannot disagree. Input shapes: keys with defaults are optional, as a user writes them.
 */
export function jsonSchemas(): Record<string, unknown> {
  const options = { io: 'input', unrepresentable: 'any', target: 'draft-2020-12' } as const;
  return {
    'cdc-invalidator.schema.json': {
      ...z.toJSONSchema(configSchema, options),
      $id: 'cdc-invalidator.schema.json',
      title: 'cdc-invalidator config file',
    },
    'mapping.schema.json': {
      ...z.toJSONSchema(mappingFileSchema, options),
      $id: 'mapping.schema.json',
      title: 'cdc-invalidator mapping file',
    },
  };
}

export function renderJsonSchema(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** `npm run schema`: writes the schemas into the folder given (default: schema/). */
async function main(): Promise<void> {
  const dir = path.resolve(process.argv[2] ?? 'schema');
  await mkdir(dir, { recursive: true });
  for (const [name, schema] of Object.entries(jsonSchemas())) {
    await writeFile(path.join(dir, name), renderJsonSchema(schema));
    process.stdout.write(`wrote ${path.join(dir, name)}\n`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err: unknown) => {
    process.stderr.write(`${String(err)}\n`);
    process.exitCode = 1;
  });
}

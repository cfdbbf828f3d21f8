// The import rules of .dependency-cruiser.cjs, enforced: src/ keeps them, and each rule catches
// what it is there to catch (a rule that matches nothing would pass for ever).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cruise, type ICruiseResult, type IConfiguration } from 'dependency-cruiser';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const config = createRequire(import.meta.url)(join(ROOT, '.dependency-cruiser.cjs')) as IConfiguration;

async function violations(baseDir: string): Promise<string[]> {
  const result = await cruise(['src'], {
    baseDir,
    validate: true,
    ruleSet: { forbidden: config.forbidden ?? [] },
    tsPreCompilationDeps: true,
    doNotFollow: { path: 'node_modules' },
  });
  const output = result.output as ICruiseResult;
  return output.summary.violations.map((v) => `${v.rule.name}: ${v.from} -> ${v.to}`);
}

describe('import rules', () => {
  it('src/ keeps them', async () => {
    expect(await violations(ROOT)).toEqual([]);
  }, 60_000);

  const dir = mkdtempSync(join(tmpdir(), 'cdc-arch-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('each rule catches a module that breaks it', async () => {
    const files: Record<string, string> = {
      'src/core/rules.ts': "import { apply } from '../sinks/redis/sink.js';\nimport { readFileSync } from 'node:fs';\nimport pg from 'pg';\nimport { quote } from '../lib/pg/sql.js';\nexport const r = [apply, readFileSync, pg, quote];\n",
      'src/lib/pg/sql.ts': 'export const quote = 1;\n',
      'src/core/cycle-a.ts': "import { b } from './cycle-b.js';\nexport const a = () => b;\n",
      'src/core/cycle-b.ts': "import { a } from './cycle-a.js';\nexport const b = () => a;\n",
      'src/ports/source.ts': "import { Worker } from '../runtime/worker.js';\nexport type S = Worker;\n",
      'src/sinks/redis/sink.ts': "import { config } from '../../config/load.js';\nexport const apply = config;\n",
      'src/sources/postgres/source.ts': "import { apply } from '../../sinks/redis/sink.js';\nimport { Worker } from '../../runtime/worker.js';\nexport const s = [apply, Worker];\n",
      'src/http/server.ts': "import { health } from '../runtime/health.js';\nimport { Worker } from '../runtime/worker.js';\nexport const h = [health, Worker];\n",
      'src/runtime/worker.ts': "import { s } from '../sources/postgres/source.js';\nexport class Worker { s = s; }\n",
      'src/runtime/health.ts': 'export const health = 1;\n',
      'src/commands/check.ts': "import { s } from '../sources/postgres/source.js';\nexport const c = s;\n",
      'src/client/cache.ts': "import { Worker } from '../runtime/worker.js';\nimport { keys } from '../lib/cache-keys.js';\nexport const c = [Worker, keys];\n",
      'src/lib/cache-keys.ts': "import { Worker } from '../runtime/worker.js';\nexport const keys = Worker;\n",
      'src/config/load.ts': 'export const config = 1;\n',
      'src/main.ts': "import { s } from './sources/postgres/source.js';\nimport { apply } from './sinks/redis/sink.js';\nexport const w = [s, apply];\n",
    };
    for (const [file, text] of Object.entries(files)) {
      mkdirSync(dirname(join(dir, file)), { recursive: true });
      writeFileSync(join(dir, file), text);
    }
    const found = await violations(dir);
    const expected = [
      'core-is-pure: src/core/rules.ts -> src/sinks/redis/sink.ts',
      'core-has-no-packages: src/core/rules.ts -> fs',
      'core-has-no-packages: src/core/rules.ts -> pg',
      'core-has-no-io: src/core/rules.ts -> src/lib/pg/sql.ts',
      'ports-are-interfaces: src/ports/source.ts -> src/runtime/worker.ts',
      'adapters-do-not-import-each-other: src/sources/postgres/source.ts -> src/sinks/redis/sink.ts',
      'adapters-do-not-import-the-application: src/sinks/redis/sink.ts -> src/config/load.ts',
      'adapters-do-not-import-the-application: src/sources/postgres/source.ts -> src/runtime/worker.ts',
      'adapters-do-not-import-the-application: src/http/server.ts -> src/runtime/health.ts',
      'adapters-do-not-import-the-application: src/http/server.ts -> src/runtime/worker.ts',
      'runtime-speaks-through-ports: src/runtime/worker.ts -> src/sources/postgres/source.ts',
      'only-main-builds-adapters: src/commands/check.ts -> src/sources/postgres/source.ts',
      'client-stands-alone: src/client/cache.ts -> src/runtime/worker.ts',
      'lib-is-shared-below-everything: src/lib/cache-keys.ts -> src/runtime/worker.ts',
      'no-circular: src/core/cycle-a.ts -> src/core/cycle-b.ts',
    ];
    for (const v of expected) expect(found).toContain(v);
    // What the rules allow: main.ts builds adapters.
    expect(found.filter((v) => v.includes('src/main.ts ->'))).toEqual([]);
  }, 60_000);
});

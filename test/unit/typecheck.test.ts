// The tests are TypeScript too: `npm test` typechecks them (and src/) with tsconfig.test.json, so a
// test that no longer matches the code it calls fails here rather than passing by accident.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

const ROOT = join(fileURLToPath(new URL('.', import.meta.url)), '..', '..');

it('src/ and test/ typecheck (tsc -p tsconfig.test.json)', async () => {
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const result = await promisify(execFile)(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.test.json')], { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 }).then(
    () => '',
    (err: { stdout?: string; stderr?: string }) => `${err.stdout ?? ''}${err.stderr ?? ''}`,
  );
  expect(result).toBe('');
}, 180_000);

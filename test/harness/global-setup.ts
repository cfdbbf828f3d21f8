// Runs once before the test files: where a server's binaries are missing (and not under CI), asks whether
// a Docker engine answers, so that those servers run in containers instead (server-backend.ts), and says
// where each service comes from.
import type { TestProject } from 'vitest/node';
import { isCI } from './ci.js';
import { binariesPresent } from './backend.js';
import { chooseBackend, type DockerProbe } from './server-backend.js';

const PROBE_TIMEOUT_MS = 15_000;

async function probeDocker(): Promise<DockerProbe> {
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${PROBE_TIMEOUT_MS / 1000} s`)), PROBE_TIMEOUT_MS);
    });
    try {
      const client = await Promise.race([getContainerRuntimeClient(), timeout]);
      return { answers: true, version: String(client.info.containerRuntime.serverVersion) };
    } finally {
      clearTimeout(timer);
    }
  } catch (err: unknown) {
    const message = err instanceof Error ? err.message.split('\n')[0] : String(err);
    return { answers: false, reason: `no Docker engine answered (${message})` };
  }
}

export default async function setup(project: TestProject): Promise<void> {
  const binaries = binariesPresent();
  const requested = process.env.CDC_TEST_SERVERS;
  const mayUseDocker = !isCI() && requested !== 'binaries' && (requested === 'containers' || Object.values(binaries).includes(false));
  const docker: DockerProbe = mayUseDocker ? await probeDocker() : { answers: false, reason: 'Docker is not asked for' };
  project.provide('cdcDocker', docker);
  if (!mayUseDocker) return;
  const facts = { ci: false, requested, binaries, docker: () => docker };
  const lines = (['postgres', 'redis', 'kafka', 'memcached'] as const).map((service) => {
    const choice = chooseBackend(service, facts);
    return `${service}: ${choice.backend ?? `unavailable (${choice.reason})`}`;
  });
  console.log(`test servers: ${lines.join('; ')}`);
}

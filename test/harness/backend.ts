// This process's answer to server-backend.ts: which services run from binaries and which in containers.
// The Docker probe ran once for the whole run, in the global setup (global-setup.ts), and reaches each
// test file through vitest's provide/inject; outside vitest (the benchmarks) there is no probe, so the
// binaries are used.
import { kafkaMissingReason } from './kafka-binaries.js';
import { findPostgresBinDir } from './postgres-binaries.js';
import { findRedisServer } from './redis-binaries.js';
import { findMemcached } from './memcached-binaries.js';
import { chooseBackend, currentFacts, type BackendChoice, type DockerProbe, type HarnessService } from './server-backend.js';

declare module 'vitest' {
  export interface ProvidedContext {
    cdcDocker: DockerProbe;
  }
}

const inject = process.env.VITEST !== undefined ? (await import('vitest')).inject : undefined;

/** Which services' binaries this machine has. */
export function binariesPresent(): Record<HarnessService, boolean> {
  return {
    postgres: findPostgresBinDir() !== undefined,
    redis: findRedisServer() !== undefined,
    kafka: kafkaMissingReason() === undefined,
    memcached: findMemcached() !== undefined,
  };
}

function providedProbe(): DockerProbe {
  return inject?.('cdcDocker') ?? { answers: false, reason: 'no Docker engine was asked (outside the test runner)' };
}

const choices = new Map<HarnessService, BackendChoice>();

/** Where `service` comes from in this process; decided once. */
export function backendFor(service: HarnessService): BackendChoice {
  let choice = choices.get(service);
  if (choice === undefined) {
    choice = chooseBackend(service, currentFacts(binariesPresent(), providedProbe));
    choices.set(service, choice);
  }
  return choice;
}

/** True when `service` runs in a container here. */
export function inContainer(service: HarnessService): boolean {
  return backendFor(service).backend === 'containers';
}

/** The images the containers run; each can be replaced through its environment variable. */
export const IMAGES = {
  postgres: () => process.env.CDC_TEST_POSTGRES_IMAGE || 'postgres:15',
  redis: () => process.env.CDC_TEST_REDIS_IMAGE || 'redis:7',
  kafka: () => process.env.CDC_TEST_KAFKA_IMAGE || 'apache/kafka:3.9.1',
  kafka4: () => process.env.CDC_TEST_KAFKA4_IMAGE || 'apache/kafka:4.4.0',
  connect: () => process.env.CDC_TEST_CONNECT_IMAGE || 'quay.io/debezium/connect:3.0.1.Final',
  memcached: () => process.env.CDC_TEST_MEMCACHED_IMAGE || 'memcached:1.6',
};

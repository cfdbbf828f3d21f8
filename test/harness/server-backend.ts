// Where the harness's servers come from: the server binaries of this machine (CI, and any machine with
// PostgreSQL, Redis and a JDK installed), or containers through testcontainers (a laptop that has only a
// Docker engine). Kept free of vitest and testcontainers imports: the choice is a pure function of the
// facts, unit-tested in server-backend.test.ts, and CI never loads or contacts Docker.
import { isCI } from './ci.js';

export type HarnessService = 'postgres' | 'redis' | 'kafka' | 'memcached';
export type ServerBackend = 'binaries' | 'containers';

/** What a Docker probe found: an engine that answered, or why there is none. */
export type DockerProbe = { answers: true; version: string } | { answers: false; reason: string };

export interface BackendFacts {
  ci: boolean;
  /** CDC_TEST_SERVERS: 'auto' (or unset), 'binaries' or 'containers'. */
  requested: string | undefined;
  /** Whether each service's binaries were found (postgres and initdb; redis-server; java and the Kafka jars; memcached). */
  binaries: Record<HarnessService, boolean>;
  /** Asked only when containers may be used: never under CI, never when every binary is here. */
  docker: () => DockerProbe;
}

export type BackendChoice = { backend: ServerBackend } | { backend: undefined; reason: string };

const REQUESTS = ['auto', 'binaries', 'containers'] as const;

/**
 * Binaries where they are; containers for the services whose binaries are missing, when a Docker engine
 * answers. Kafka Connect in a container reaches Postgres over the containers' network, which a Postgres
 * listening on this machine's loopback is not on: when Kafka runs in containers, Postgres does too.
 * Under CI the answer is always the binaries (a missing one fails its tests with what to install).
 */
export function chooseBackend(service: HarnessService, facts: BackendFacts): BackendChoice {
  const requested = facts.requested === undefined || facts.requested === '' ? 'auto' : facts.requested;
  if (!(REQUESTS as readonly string[]).includes(requested)) {
    throw new Error(`CDC_TEST_SERVERS=${requested}: expected one of ${REQUESTS.join(', ')}`);
  }
  if (facts.ci) {
    if (requested === 'containers') {
      throw new Error('CDC_TEST_SERVERS=containers with CI=true: CI runs the server binaries and never needs Docker');
    }
    return { backend: 'binaries' };
  }
  if (requested === 'binaries') return { backend: 'binaries' };
  const needsContainer =
    requested === 'containers' ||
    !facts.binaries[service] ||
    (service === 'postgres' && !facts.binaries.kafka && dockerAnswers(facts));
  if (!needsContainer) return { backend: 'binaries' };
  const docker = facts.docker();
  if (docker.answers) return { backend: 'containers' };
  if (requested === 'containers') return { backend: undefined, reason: `CDC_TEST_SERVERS=containers, but ${docker.reason}` };
  if (facts.binaries[service]) return { backend: 'binaries' };
  return { backend: undefined, reason: `its binaries are missing and ${docker.reason}` };
}

function dockerAnswers(facts: BackendFacts): boolean {
  return facts.docker().answers;
}

/** The facts of this process: CI, CDC_TEST_SERVERS, and a Docker probe the caller supplies. */
export function currentFacts(binaries: Record<HarnessService, boolean>, docker: () => DockerProbe): BackendFacts {
  return { ci: isCI(), requested: process.env.CDC_TEST_SERVERS, binaries, docker };
}

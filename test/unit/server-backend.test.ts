import { describe, expect, it } from 'vitest';
import { chooseBackend, type BackendFacts, type DockerProbe, type HarnessService } from '../harness/server-backend.js';

const ALL = { postgres: true, redis: true, kafka: true, memcached: true };
const ANSWERS: DockerProbe = { answers: true, version: '28.2.2' };
const SILENT: DockerProbe = { answers: false, reason: 'no Docker engine answered (connect ENOENT /var/run/docker.sock)' };

function facts(overrides: Partial<Omit<BackendFacts, 'docker'>> & { docker?: DockerProbe | 'never' }): BackendFacts & { asked: () => number } {
  let asks = 0;
  const probe = overrides.docker ?? SILENT;
  return {
    ci: overrides.ci ?? false,
    requested: overrides.requested,
    binaries: overrides.binaries ?? ALL,
    docker: () => {
      asks += 1;
      if (probe === 'never') throw new Error('Docker must not be asked here');
      return probe;
    },
    asked: () => asks,
  };
}

function choices(f: BackendFacts): Record<HarnessService, string> {
  const of = (service: HarnessService) => {
    const choice = chooseBackend(service, f);
    return choice.backend ?? `missing: ${choice.reason}`;
  };
  return { postgres: of('postgres'), redis: of('redis'), kafka: of('kafka'), memcached: of('memcached') };
}

describe('where the test servers come from', () => {
  it('uses the binaries when every one is here, without asking Docker', () => {
    const f = facts({ docker: 'never' });
    expect(choices(f)).toEqual({ postgres: 'binaries', redis: 'binaries', kafka: 'binaries', memcached: 'binaries' });
    expect(f.asked()).toBe(0);
  });

  it('under CI uses the binaries even where they are missing (their tests fail with what to install), and never asks Docker', () => {
    const f = facts({ ci: true, binaries: { postgres: false, redis: false, kafka: false, memcached: false }, docker: 'never' });
    expect(choices(f)).toEqual({ postgres: 'binaries', redis: 'binaries', kafka: 'binaries', memcached: 'binaries' });
    expect(f.asked()).toBe(0);
  });

  it('refuses containers under CI', () => {
    expect(() => chooseBackend('postgres', facts({ ci: true, requested: 'containers', docker: 'never' }))).toThrow(
      /CI runs the server binaries and never needs Docker/,
    );
  });

  it('runs only the missing service in a container when Docker answers', () => {
    expect(choices(facts({ binaries: { postgres: true, redis: false, kafka: true, memcached: true }, docker: ANSWERS }))).toEqual({
      postgres: 'binaries',
      redis: 'containers',
      kafka: 'binaries',
      memcached: 'binaries',
    });
  });

  it('runs Postgres in a container too when Kafka does: Connect in a container reaches Postgres only on their network', () => {
    expect(choices(facts({ binaries: { postgres: true, redis: true, kafka: false, memcached: true }, docker: ANSWERS }))).toEqual({
      postgres: 'containers',
      redis: 'binaries',
      kafka: 'containers',
      memcached: 'binaries',
    });
  });

  it('says why a service is missing when its binaries are and Docker does not answer; the others keep their binaries', () => {
    expect(choices(facts({ binaries: { postgres: true, redis: true, kafka: false, memcached: true }, docker: SILENT }))).toEqual({
      postgres: 'binaries',
      redis: 'binaries',
      kafka: `missing: its binaries are missing and ${SILENT.reason}`,
      memcached: 'binaries',
    });
  });

  it('CDC_TEST_SERVERS=containers runs everything in containers, or says that Docker did not answer', () => {
    expect(choices(facts({ requested: 'containers', docker: ANSWERS }))).toEqual({
      postgres: 'containers',
      redis: 'containers',
      kafka: 'containers',
      memcached: 'containers',
    });
    expect(chooseBackend('redis', facts({ requested: 'containers', docker: SILENT }))).toEqual({
      backend: undefined,
      reason: `CDC_TEST_SERVERS=containers, but ${SILENT.reason}`,
    });
  });

  it('CDC_TEST_SERVERS=binaries never asks Docker', () => {
    const f = facts({ requested: 'binaries', binaries: { postgres: false, redis: false, kafka: false, memcached: false }, docker: 'never' });
    expect(choices(f)).toEqual({ postgres: 'binaries', redis: 'binaries', kafka: 'binaries', memcached: 'binaries' });
  });

  it('treats an empty CDC_TEST_SERVERS as auto and refuses an unknown one', () => {
    expect(chooseBackend('redis', facts({ requested: '', docker: 'never' }))).toEqual({ backend: 'binaries' });
    expect(() => chooseBackend('redis', facts({ requested: 'docker' }))).toThrow('CDC_TEST_SERVERS=docker: expected one of auto, binaries, containers');
  });
});

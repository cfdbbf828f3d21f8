// Finding java and the Kafka and Debezium jars the harness runs (test/kafka/pom.xml fetches them). Apart
// from kafka.ts, which starts servers and registers vitest hooks, so that the backend choice can ask.
import { readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findOnPath, isExecutable } from './server-process.js';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The folder holding broker/ and connect/ jar folders: $KAFKA_LIB_DIR, else .tools/kafka-lib. */
export function kafkaLibDir(): string {
  return process.env.KAFKA_LIB_DIR || join(REPO_ROOT, '.tools', 'kafka-lib');
}

function hasJars(dir: string): boolean {
  try {
    return readdirSync(dir).some((name) => name.endsWith('.jar'));
  } catch {
    return false;
  }
}

/** java from $JAVA_HOME, else PATH. */
export function findJava(): string | undefined {
  const home = process.env.JAVA_HOME;
  if (home) {
    const candidate = join(home, 'bin', 'java');
    if (isExecutable(candidate)) return candidate;
  }
  return findOnPath('java') ?? ['/usr/bin/java'].find(isExecutable);
}

/** Why the Kafka tests cannot run here, or undefined when they can. */
export function kafkaMissingReason(): string | undefined {
  const reasons: string[] = [];
  if (findJava() === undefined) reasons.push('java not found in $JAVA_HOME or PATH (Debian: apt-get install default-jdk-headless).');
  const lib = kafkaLibDir();
  if (!hasJars(join(lib, 'broker')) || !hasJars(join(lib, 'broker4')) || !hasJars(join(lib, 'connect'))) {
    reasons.push(`the Kafka and Debezium jars are not in ${lib}: run mvn -q -f test/kafka/pom.xml dependency:copy-dependencies`);
  }
  return reasons.length === 0 ? undefined : reasons.join(' ');
}

// Import rules of src/, checked by `npm test` (test/unit/architecture.test.ts) and `npm run lint:deps`.
//
//   core/      the rules engine: pure functions over changes and rules, no I/O, no packages
//   ports/     the interfaces between the worker loop and its adapters (source, sink, lookups)
//   runtime/   the worker loop, its stats, health and metrics: speaks to adapters through ports only
//   adapters   sources/postgres, sources/debezium, sinks/redis, lookups, http: each stands alone
//   lib/       helpers shared by several of the above (backoff, SQL quoting, Postgres access, key names)
//   client/    the application-side library: no worker code
//   main.ts    the one place that builds adapters and wires them to the loop
const ADAPTERS = '^src/(sources/postgres|sources/debezium|sinks/redis|sinks/memcached|lookups|http)/';

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'core-is-pure',
      comment: 'core/ is the rules engine: it imports only core/ and the pure helpers of lib/, never a package or a Node module.',
      severity: 'error',
      from: { path: '^src/core/' },
      to: { pathNot: '^src/(core|lib)/', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'core-has-no-io',
      comment: 'core/ does no I/O: lib/pg is Postgres access.',
      severity: 'error',
      from: { path: '^src/core/' },
      to: { path: '^src/lib/pg/' },
    },
    {
      name: 'core-has-no-packages',
      comment: 'core/ uses no package and no Node module.',
      severity: 'error',
      from: { path: '^src/core/' },
      to: { dependencyTypes: ['core', 'npm', 'npm-dev', 'npm-optional', 'npm-peer', 'npm-bundled', 'npm-no-pkg', 'npm-unknown', 'unknown', 'undetermined'] },
    },
    {
      name: 'ports-are-interfaces',
      comment: 'ports/ declares interfaces over core types and nothing else.',
      severity: 'error',
      from: { path: '^src/ports/' },
      to: { pathNot: '^src/(ports|core)/' },
    },
    {
      name: 'adapters-do-not-import-each-other',
      comment: 'An adapter stands alone; what two adapters share belongs in lib/ (or sources/*.ts for sources).',
      severity: 'error',
      from: { path: ADAPTERS },
      to: { path: ADAPTERS, pathNot: '^src/$1/' },
    },
    {
      name: 'adapters-do-not-import-the-application',
      comment: 'Adapters receive their settings from main.ts; they do not read config, run the loop or reach commands. The HTTP adapter reads health and metrics through ports/status.ts.',
      severity: 'error',
      from: { path: ADAPTERS },
      to: { path: '^src/(runtime|config|commands|client)/|^src/(main|cli|cli-main|index)\\.ts$' },
    },
    {
      name: 'runtime-speaks-through-ports',
      comment: 'The worker loop knows adapters only by their ports; main.ts builds them.',
      severity: 'error',
      from: { path: '^src/runtime/' },
      to: { path: [ADAPTERS, '^src/(config|commands|client)/', '^src/(main|cli|cli-main|index)\\.ts$'] },
    },
    {
      name: 'only-main-builds-adapters',
      comment: 'Adapters are built in main.ts only (a command such as check uses lib/ to reach servers).',
      severity: 'error',
      from: { pathNot: [ADAPTERS, '^src/main\\.ts$'] },
      to: { path: ADAPTERS },
    },
    {
      name: 'client-stands-alone',
      comment: 'The application-side client loads no worker code: only client/, lib/ key names (cache-keys, cluster-slot), the memcached meta protocol (lib/memcached) and LSN parsing.',
      severity: 'error',
      from: { path: '^src/client/' },
      to: { path: '^src/', pathNot: '^src/(client/|lib/cache-keys\\.ts$|lib/cluster-slot\\.ts$|lib/memcached/|core/lsn\\.ts$|errors\\.ts$)' },
    },
    {
      name: 'lib-is-shared-below-everything',
      comment: 'lib/ is used by the layers above it and uses none of them (core types aside).',
      severity: 'error',
      from: { path: '^src/lib/' },
      to: { path: '^src/', pathNot: '^src/(lib/|errors\\.ts$|log\\.ts$)', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'no-circular',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'] },
  },
};

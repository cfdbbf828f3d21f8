export { loadConfig, type LoadedConfig } from './load.js';
export {
  configSchema,
  mappingFileSchema,
  ruleSchema,
  LOG_LEVELS,
  SOURCE_KINDS,
  type BatchConfig,
  type Config,
  type HttpConfig,
  type LogLevel,
  type MappingFile,
  type PostgresSourceConfig,
  type RedisConfig,
  type Rule,
} from './schema.js';
export { formatPath } from './yaml-document.js';

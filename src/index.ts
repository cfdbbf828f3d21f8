/**
 * The package's library surface: the pure rules engine (what `explain` runs) and config loading,
 * for tools that want to compute keys the way the worker does, and the helper applications use to
 * register cached keys under tags.
 */
export type { Change, DeadLetter, Evaluation, FallbackUse, KeyOperation, Operation, Row, Value } from './core/change.js';
export { evaluate, emptyEvaluation } from './core/evaluate.js';
export { compileRules, parseTableName, type CompiledRule, type MappingSpec, type RuleSet, type RuleSpec } from './core/rules.js';
export { parseTemplate, renderTemplate, type Template } from './core/template.js';
export { escapeGlob } from './core/glob.js';
export { registerTags, tagKey, type RegisterTagsOptions } from './client/tags.js';
export { loadConfig, type LoadedConfig, type Config } from './config/index.js';
export { ConfigError, InvalidatorError, type FileProblem } from './errors.js';

import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ConnectionSettingsError, resolveTemporalConnection } from '../src/connection.js';
import { ConfigError } from '../src/config.js';

/**
 * A worker's config from a file and/or the environment, validated by the worker's zod schema:
 *
 * 1. a JSON base: `--config FILE` or `$FERRY_CONFIG` (a file), or `$FERRY_CONFIG_JSON` (inline);
 * 2. `temporal`: Temporal's own variables and profiles (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE,
 *    TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE, TEMPORAL_CONFIG_FILE) under what the file says;
 * 3. one variable per setting, over everything: `FERRY_<PATH>`, path segments in SCREAMING_SNAKE_CASE
 *    joined by `__` (`FERRY_CONNECTOR_ID`, `FERRY_WORKER__HEALTH__PORT`, `FERRY_DSP__PUBLIC_URL`).
 *    Values are taken as strings where the setting is a string, else as JSON (`8080`, `true`,
 *    `[{"id":"dp-1"}]`). `FERRY_<PATH>_FILE` reads the value from a file (secrets: `FERRY_SECRET_KEY_FILE`).
 *
 * Every problem is reported at once, each naming the variable (or file) it came from.
 */

/** Variables of ferry that are not settings (read elsewhere): keys and tokens (README "Keys"), the dev command's, the CLI's. */
const NOT_SETTINGS = new Set(['FERRY_CONFIG', 'FERRY_CONFIG_JSON', 'FERRY_DATA_DIR', 'FERRY_DEBUG', 'FERRY_UI_URL', 'FERRY_LOG_STACKS', 'FERRY_CACHE_DIR', 'FERRY_CHROMIUM', 'FERRY_POSTGRES_BIN']);
const notASetting = (name: string): boolean => NOT_SETTINGS.has(name) || /^FERRY_\w+_(KEYS|TOKENS)(_FILE)?$/.test(name) || /^FERRY_(DEV|TCK|MODEL|CLUSTER)_/.test(name);

const camel = (segment: string): string => segment.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

type AnyDef = { type: string; innerType?: z.ZodType; in?: z.ZodType; shape?: Record<string, z.ZodType>; options?: z.ZodType[]; valueType?: z.ZodType };
const defOf = (s: z.ZodType): AnyDef => (s as unknown as { _zod: { def: AnyDef } })._zod.def;

/** The schema of the setting at `path`, looking through defaults, optionals and unions; undefined when there is none. */
export function settingSchema(schema: z.ZodType, path: string[]): z.ZodType | 'record' | undefined {
  let current: z.ZodType = schema;
  for (let i = 0; ; ) {
    const def = defOf(current);
    if (def.innerType && ['default', 'optional', 'nullable', 'prefault', 'readonly', 'catch', 'nonoptional'].includes(def.type)) {
      current = def.innerType;
      continue;
    }
    if (def.type === 'pipe' && def.in) {
      current = def.in;
      continue;
    }
    if (i === path.length) return current;
    if (def.type === 'object' && def.shape) {
      const next = def.shape[path[i]!];
      if (!next) return undefined;
      current = next;
      i++;
      continue;
    }
    if (def.type === 'union' && def.options) {
      for (const option of def.options) {
        const found = settingSchema(option, path.slice(i));
        if (found) return found;
      }
      return undefined;
    }
    // below a record the keys are data (asset ids, …), not settings: give the record as JSON
    if (def.type === 'record') return 'record';
    return undefined;
  }
}

function setIn(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    node = node[key] = next && typeof next === 'object' && !Array.isArray(next) ? { ...(next as Record<string, unknown>) } : {};
  }
  node[path.at(-1)!] = value;
}

interface Sourced {
  raw: Record<string, unknown>;
  /** dotted path → where its value came from */
  sources: Map<string, string>;
  warnings: string[];
}

function readBase(argvConfig: string | undefined, env: NodeJS.ProcessEnv, what: string): { raw: Record<string, unknown>; origin?: string } {
  const file = argvConfig ?? env.FERRY_CONFIG;
  if (file && env.FERRY_CONFIG_JSON) throw new ConfigError(`${what}: give either ${argvConfig ? '--config' : 'FERRY_CONFIG'} or FERRY_CONFIG_JSON, not both`);
  let text: string | undefined;
  let origin: string | undefined;
  if (file) {
    origin = `config file ${file}`;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new ConfigError(`cannot read ${what} config ${file}: ${(e as Error).message}`);
    }
  } else if (env.FERRY_CONFIG_JSON) {
    origin = 'FERRY_CONFIG_JSON';
    text = env.FERRY_CONFIG_JSON;
  }
  if (text === undefined) return { raw: {} };
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${what} ${origin} is not valid JSON: ${(e as Error).message}`);
  }
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(`${what} ${origin} must hold a JSON object`);
  return { raw: raw as Record<string, unknown>, origin };
}

function applyEnv(schema: z.ZodType, base: Record<string, unknown>, env: NodeJS.ProcessEnv, what: string): Sourced {
  const raw = structuredClone(base);
  const sources = new Map<string, string>();
  const warnings: string[] = [];
  const problems: string[] = [];
  const vars = Object.keys(env)
    .filter((k) => k.startsWith('FERRY_') && !notASetting(k) && env[k] !== undefined)
    .sort();
  for (const name of vars) {
    let key = name.slice('FERRY_'.length);
    let path = key.split('__').map(camel);
    let fromFile: string | undefined;
    if (key.endsWith('_FILE') && !settingSchema(schema, path)) {
      key = key.slice(0, -'_FILE'.length);
      path = key.split('__').map(camel);
      fromFile = env[name]!;
    }
    const leaf = settingSchema(schema, path);
    if (!leaf) {
      if (!settingSchema(schema, path.slice(0, 1))) warnings.push(`ignoring ${name}: not a ${what} setting`);
      else problems.push(`${name}: no setting ${path.join('.')} in the ${what} config`);
      continue;
    }
    let text: string;
    if (fromFile !== undefined) {
      try {
        text = readFileSync(fromFile, 'utf8').trim();
      } catch (e) {
        problems.push(`${name}: cannot read ${fromFile}: ${(e as Error).message}`);
        continue;
      }
    } else text = env[name]!;
    let value: unknown = text;
    if (leaf === 'record' || !leaf.safeParse(text).success) {
      try {
        value = JSON.parse(text);
      } catch {
        // left a string: the schema says what is wrong with it, naming the variable
      }
    }
    setIn(raw, path, value);
    sources.set(path.join('.'), name);
  }
  if (problems.length > 0) throw new ConfigError(`invalid ${what} settings:\n${problems.map((p) => `  ✖ ${p}`).join('\n')}`);
  return { raw, sources, warnings };
}

/** Where the value at an issue's path came from: the most specific variable that set it or a parent. */
function originOf(path: PropertyKey[], sources: Map<string, string>, fallback: string): string {
  for (let n = path.length; n > 0; n--) {
    const found = sources.get(path.slice(0, n).map(String).join('.'));
    if (found) return found;
  }
  return fallback;
}

export interface LoadedConfig<T> {
  config: T;
  /** Lines to log once the logger is up (ignored variables). */
  warnings: string[];
}

/** Loads, merges and validates a worker config (see the comment at the top); a ConfigError lists every problem. */
export function loadWorkerConfig<T extends z.ZodType>(schema: T, what: string, opts: { configFile?: string; env?: NodeJS.ProcessEnv } = {}): LoadedConfig<z.infer<T>> {
  const env = opts.env ?? process.env;
  const { raw: base, origin } = readBase(opts.configFile, env, what);

  // Temporal's conventions below the file's explicit `temporal` settings
  const explicitTemporal = (base.temporal ?? {}) as Record<string, unknown>;
  let temporal;
  try {
    temporal = resolveTemporalConnection({ explicit: explicitTemporal, env });
  } catch (e) {
    if (e instanceof ConnectionSettingsError) throw new ConfigError(`${what}: ${e.message}`);
    throw e;
  }
  const sources = new Map<string, string>();
  for (const key of Object.keys(temporal)) {
    if (!(key in explicitTemporal)) sources.set(`temporal.${key}`, 'the Temporal environment (TEMPORAL_* variables, temporal.toml)');
  }
  const merged = applyEnv(schema, { ...base, temporal }, env, what);
  for (const [k, v] of merged.sources) sources.set(k, v);

  const result = schema.safeParse(merged.raw);
  if (!result.success) {
    const lines = result.error.issues.map((issue) => {
      const at = issue.path.length > 0 ? issue.path.map(String).join('.') : '(root)';
      return `  ✖ ${originOf(issue.path, sources, origin ?? 'defaults (no --config, FERRY_CONFIG or FERRY_CONFIG_JSON)')}: ${at}: ${issue.message}`;
    });
    throw new ConfigError(`invalid ${what} config:\n${lines.join('\n')}`);
  }
  return { config: result.data, warnings: merged.warnings };
}

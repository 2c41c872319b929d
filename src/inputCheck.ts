import { credentialParams, KNOWN_ENDPOINT_TYPES, moveUrlCredentials, QUERY_PROPERTY_PREFIX, urlCredentialProblem, type DataAddress } from './DataAddress.js';
import { ID_MAX, ID_PATTERN, ID_RULE } from './ids.js';
import { CONTROL_BUT_WHITESPACE, CONTROL_OR_FORMAT, isWellFormed, LIMITS, utf8Bytes, VISIBLE_ASCII } from './limits.js';
import { DURATION, TRANSFER_SETTINGS_DEFAULTS } from './settings.js';
import { TRANSFER_TYPES, type TransferProcessInput } from './TransferProcess.js';

/**
 * The TransferProcess workflow's own check of its input, without zod (zod inside the workflow
 * sandbox cost a third of its CPU and a megabyte per cached workflow, issue 12). Every start goes
 * through TransferProcessInputSchema first (client, DSP server, in-cluster transport); this only
 * stops a start that bypassed them, with the same rules for every field but the settings' ranges
 * (the openTransfer activity checks those with the schema). For valid input it returns what the
 * schema returns: unknown keys dropped, `endpointProperties` defaulted, URL credentials moved
 * into properties; settings only as given (the openTransfer activity adds the worker's defaults).
 */
export function checkTransferProcessInput(raw: unknown): { input: TransferProcessInput } | { problems: string[] } {
  const problems: string[] = [];
  if (!isRecord(raw)) return { problems: ['input must be an object'] };
  const field = <T>(name: string, check: (v: unknown) => string | undefined, optional = false): T | undefined => {
    const v = raw[name];
    if (v === undefined) {
      if (!optional) problems.push(`${name}: required`);
      return undefined;
    }
    const problem = check(v);
    if (problem) problems.push(`${name}: ${problem}`);
    return v as T;
  };
  const input = {
    role: field<'CONSUMER' | 'PROVIDER'>('role', oneOf(['CONSUMER', 'PROVIDER'])),
    connectorId: field<string>('connectorId', id),
    processId: field<string>('processId', id),
    counterpartyPid: field<string>('counterpartyPid', token('pid', LIMITS.pid), true),
    counterpartyAddress: field<string>('counterpartyAddress', address),
    counterpartyId: field<string>('counterpartyId', id, true),
    agreementId: field<string>('agreementId', token('agreementId', LIMITS.agreementId)),
    assetId: field<string>('assetId', token('assetId', LIMITS.assetId)),
    transferType: field<TransferProcessInput['transferType']>('transferType', (v) =>
      (TRANSFER_TYPES as readonly unknown[]).includes(v) ? undefined : `unsupported transferType ${JSON.stringify(v)}; supported: ${TRANSFER_TYPES.join(', ')}`,
    ),
    dataDestination: field<Record<string, unknown>>('dataDestination', dataAddressProblem, true),
    dataPlaneId: field<string>('dataPlaneId', id, true),
    settings: field<Record<string, unknown>>('settings', settingsProblem, true),
    startPolicy: field<'automatic' | 'manual'>('startPolicy', oneOf(['automatic', 'manual']), true),
  };
  if (problems.length) return { problems };
  const { dataDestination, settings, ...rest } = input;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(rest)) if (v !== undefined) out[k] = v;
  if (dataDestination) out.dataDestination = dataAddressOf(dataDestination);
  // in the schema's order (the defaults object lists the settings in it)
  if (settings) out.settings = Object.fromEntries(Object.keys(TRANSFER_SETTINGS_DEFAULTS).filter((k) => settings[k] !== undefined).map((k) => [k, settings[k]]));
  // same key order as the schema's output
  const ordered: Record<string, unknown> = {};
  for (const k of Object.keys(input)) if (k in out) ordered[k] = out[k];
  return { input: ordered as TransferProcessInput };
}

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

const oneOf = (values: readonly string[]) => (v: unknown) => (values.includes(v as string) ? undefined : `expected one of ${values.join(', ')}`);

const string = (what: string, max: number, min = 1) => (v: unknown): string | undefined => {
  if (typeof v !== 'string') return 'expected a string';
  if (v.length < min) return `${what} must not be empty`;
  if (v.length > max) return `${what} has more than ${max} characters`;
  return undefined;
};

const id = (v: unknown) => string('id', ID_MAX)(v) ?? (ID_PATTERN.test(v as string) ? undefined : ID_RULE);

const token = (what: string, max: number) => (v: unknown) =>
  string(what, max)(v) ?? (VISIBLE_ASCII.test(v as string) ? undefined : `${what} may contain only visible ASCII characters (no spaces, controls or unicode)`);

const text = (what: string, max: number) => (v: unknown) =>
  string(what, max, 0)(v) ??
  (!isWellFormed(v as string) ? `${what} contains a lone surrogate` : CONTROL_BUT_WHITESPACE.test(v as string) ? `${what} contains a control character` : undefined);

const locator = (what: string, max: number) => (v: unknown) =>
  string(what, max)(v) ??
  (!isWellFormed(v as string) ? `${what} contains a lone surrogate` : CONTROL_OR_FORMAT.test(v as string) ? `${what} contains a control or format character` : undefined);

const address = (v: unknown) =>
  locator('address', LIMITS.addressBytes)(v) ?? (utf8Bytes(v as string) > LIMITS.addressBytes ? `address has more than ${LIMITS.addressBytes} bytes` : undefined);

function dataAddressProblem(v: unknown): string | undefined {
  if (!isRecord(v)) return 'expected a data address object';
  if (!(KNOWN_ENDPOINT_TYPES as readonly unknown[]).includes(v.endpointType)) {
    return `unknown endpointType ${JSON.stringify(v.endpointType)}; expected one of ${KNOWN_ENDPOINT_TYPES.join(', ')}`;
  }
  const endpoint = locator('endpoint', LIMITS.endpoint)(v.endpoint);
  if (endpoint) return endpoint;
  const props = v.endpointProperties ?? [];
  if (!Array.isArray(props)) return 'endpointProperties must be an array';
  if (props.length > LIMITS.properties) return `at most ${LIMITS.properties} endpointProperties`;
  for (const p of props) {
    if (!isRecord(p)) return 'endpointProperties[] must be objects';
    const problem = token('endpointProperties[].name', LIMITS.propertyName)(p.name) ?? text('endpointProperties[].value', LIMITS.propertyValue)(p.value);
    if (problem) return problem;
  }
  const credentials = urlCredentialProblem(v.endpoint as string);
  if (credentials) return `endpoint ${credentials}`;
  if (!URL.canParse(v.endpoint as string)) return undefined;
  const url = new URL(v.endpoint as string);
  const names = credentialParams(url);
  if (props.length + names.length > LIMITS.properties) return `at most ${LIMITS.properties} endpointProperties (query credentials included)`;
  for (const name of names) {
    if (url.searchParams.getAll(name).length > 1) return `endpoint names the query parameter ${JSON.stringify(name)} twice`;
    if (props.some((p) => p.name === `${QUERY_PROPERTY_PREFIX}${name}`)) return `endpoint has a query parameter ${JSON.stringify(name)} and a property ${QUERY_PROPERTY_PREFIX}${name}`;
  }
  return undefined;
}

/** The address as the schema outputs it: known keys only, properties defaulted, URL credentials moved. */
function dataAddressOf(v: Record<string, unknown>): DataAddress {
  const props = (v.endpointProperties ?? []) as { name: string; value: string }[];
  return moveUrlCredentials({
    endpointType: v.endpointType as DataAddress['endpointType'],
    endpoint: v.endpoint as string,
    endpointProperties: props.map((p) => ({ name: p.name, value: p.value })),
  });
}

function settingsProblem(v: unknown): string | undefined {
  if (!isRecord(v)) return 'expected an object';
  for (const [k, value] of Object.entries(v)) {
    if (!(k in TRANSFER_SETTINGS_DEFAULTS)) return `unknown setting ${JSON.stringify(k)}`;
    if (value === undefined) continue;
    // counts are integers; durations integers (ms) or strings like 30s
    const count = typeof TRANSFER_SETTINGS_DEFAULTS[k as keyof typeof TRANSFER_SETTINGS_DEFAULTS] === 'number';
    if (typeof value === 'number' ? !Number.isInteger(value) : count || typeof value !== 'string' || !DURATION.test(value)) {
      return `${k}: expected ${count ? 'an integer' : 'an integer (ms) or a duration like 500ms, 30s, 5m, 1h or 2d'}`;
    }
  }
  return undefined;
}

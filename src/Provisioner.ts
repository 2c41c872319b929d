import type { DataAddress } from './DataAddress.js';

/**
 * Provisioner SPI (data plane). A provisioner prepares a resource a transfer needs (a directory,
 * an endpoint, a token, a bucket) and releases it afterwards. It runs only inside data-plane
 * activities, so it may do I/O; the DataFlow workflow only sees its results.
 */
export type ProvisionSide = 'source' | 'destination';
export type Role = 'CONSUMER' | 'PROVIDER';

export interface ProvisionRequest {
  flowId: string;
  /** The provisioning round this call belongs to: a callback reports on this round only. */
  round?: string;
  /** The DataFlow workflow whose state the resource belongs to (a public endpoint asks it whether a token is live). */
  workflowId: string;
  role: Role;
  side: ProvisionSide;
  address: DataAddress;
  /** URL the provisioner's external service calls back on when it answered "pending". */
  callbackUrl: string;
}

export interface ProvisionResult {
  /**
   * The address to use from now on, replacing the one the provisioner was given; absent when it
   * rewrites nothing. Provisioners of a flow run one after another in configured order, each given
   * the address the previous ones produced, so their rewrites compose.
   */
  address?: DataAddress;
  /** True when the resource is completed later, by an external callback to `callbackUrl`. */
  pending: boolean;
  /** What `deprovision` needs to release the resource. JSON, no secrets. */
  resource: Record<string, string>;
}

/** Why a resource is released: a completed transfer keeps its delivered data. */
export type DeprovisionReason = 'completed' | 'suspended' | 'terminated' | 'failed';

export interface DeprovisionRequest {
  flowId: string;
  /** The release round this call belongs to: a callback reports on this round only. */
  round?: string;
  side: ProvisionSide;
  resource: Record<string, string>;
  reason: DeprovisionReason;
  callbackUrl: string;
}

/**
 * Which addresses a provisioner serves, as data: the DataFlow plans a flow's provisioning itself
 * from these (no round trip to the worker), in the configured order.
 */
export interface ProvisionerMatch {
  /** Unique within a data plane; recorded in the DataFlow so deprovisioning finds the same provisioner. */
  name: string;
  side: ProvisionSide;
  /** Roles it serves; all when absent. */
  roles?: readonly Role[];
  /** Endpoint types it serves; all when absent. */
  endpointTypes?: readonly string[];
  /** Only addresses whose endpoint starts with this (an unissued EDR, say). */
  endpointPrefix?: string;
}

export function matches(m: ProvisionerMatch, role: Role, side: ProvisionSide, address: DataAddress): boolean {
  return (
    m.side === side &&
    (!m.roles || m.roles.includes(role)) &&
    (!m.endpointTypes || m.endpointTypes.includes(address.endpointType)) &&
    (!m.endpointPrefix || address.endpoint.startsWith(m.endpointPrefix))
  );
}

/** The provisioners that apply to a flow's addresses, in configured order (pure: the workflow runs it). */
export function planProvisioning(
  provisioners: readonly ProvisionerMatch[],
  role: Role,
  addresses: { source?: DataAddress; destination?: DataAddress },
): { provisioner: string; side: ProvisionSide }[] {
  return provisioners.flatMap((p) => {
    const address = addresses[p.side];
    return address && matches(p, role, p.side, address) ? [{ provisioner: p.name, side: p.side }] : [];
  });
}

export interface Provisioner {
  /** Unique within a data plane; recorded in the DataFlow so deprovisioning finds the same provisioner. */
  readonly name: string;
  /** Which addresses it serves (the DataFlow plans from this). */
  readonly match: ProvisionerMatch;
  /** Throw `ProvisionRejected` for errors no retry can fix (bad address); anything else is retried. */
  provision(request: ProvisionRequest): Promise<ProvisionResult>;
  /** Idempotent: releasing twice, or something already gone, succeeds. */
  deprovision(request: DeprovisionRequest): Promise<{ pending: boolean }>;
}

/** An error no retry can fix; the activity layer turns it into a non-retryable failure. */
export class ProvisionRejected extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProvisionRejected';
  }
}

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
  /** The DataFlow workflow whose state the resource belongs to (a public endpoint asks it whether a token is live). */
  workflowId: string;
  role: Role;
  side: ProvisionSide;
  address: DataAddress;
  /** URL the provisioner's external service calls back on when it answered "pending". */
  callbackUrl: string;
}

export interface ProvisionResult {
  /** The address to use from now on (the same one when nothing was rewritten). */
  address: DataAddress;
  /** True when the resource is completed later, by an external callback to `callbackUrl`. */
  pending: boolean;
  /** What `deprovision` needs to release the resource. JSON, no secrets. */
  resource: Record<string, string>;
}

/** Why a resource is released: a completed transfer keeps its delivered data. */
export type DeprovisionReason = 'completed' | 'suspended' | 'terminated' | 'failed';

export interface DeprovisionRequest {
  flowId: string;
  side: ProvisionSide;
  resource: Record<string, string>;
  reason: DeprovisionReason;
  callbackUrl: string;
}

export interface Provisioner {
  /** Unique within a data plane; recorded in the DataFlow so deprovisioning finds the same provisioner. */
  readonly name: string;
  /** Pure and cheap: does this provisioner handle that side's address for that role? */
  appliesTo(role: Role, side: ProvisionSide, address: DataAddress): boolean;
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

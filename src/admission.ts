import path from 'node:path';
import type { DataAddress } from './DataAddress.js';
import { DataAddressSchema } from './schemas/DataAddress.js';
import { isConfinedPath } from './FileAddress.js';
import { isPull, TRANSFER_TYPES, type TransferType } from './TransferProcess.js';
import { parseHttpUrl, UrlPolicyError } from './urlPolicy.js';

/**
 * Provider admission: may this counterparty have this transfer? One pure function that both
 * transports use before anything runs (the DSP server before it starts a workflow; the provider's
 * own workflow as its first step for in-cluster requests, through the `admitTransferRequest`
 * activity). It checks:
 * - the agreement exists and was made with this counterparty (an agreement of someone else is
 *   "unknown": the caller learns nothing about other counterparties' agreements);
 * - an asset named by the request is the agreement's, and the provider has that asset;
 * - `format` is a transfer type this provider offers: ferry knows it and a configured data plane serves it;
 * - format ⇄ data address: `File-PUSH` takes a File address, `HttpData-PUSH` an HttpData address
 *   (an http(s) URL without credentials), a pull none;
 * - a File destination has no `..` segment (a relative one stays below the data plane's root, which
 *   confines every path again; an absolute one is what a consumer's provisioner hands out) and is
 *   not inside the directory of any asset (the provider's assets are never a destination).
 * Refusal reasons are meant for the counterparty: they name nothing of the provider's internals.
 */

export interface AdmissionPolicy {
  agreements: Readonly<Record<string, { assetId: string; counterparty: string; start?: 'automatic' | 'manual' | undefined }>>;
  assets: Readonly<Record<string, DataAddress>>;
  dataPlanes: readonly { id: string; transferTypes: readonly string[] }[];
}

export interface AdmissionRequest {
  /** The authenticated counterparty asking (a DSP counterparty id, or the in-cluster consumer connector). */
  counterpartyId: string;
  agreementId: string;
  /** In-cluster requests name the asset; over DSP the agreement does. */
  assetId?: string | undefined;
  /** DSP `format`: the transfer type. */
  format: string;
  dataAddress?: DataAddress | undefined;
}

export type AdmissionRefusal = 'UnknownAgreement' | 'UnknownAsset' | 'UnsupportedFormat' | 'InvalidDataAddress';

export type Admission =
  | { admitted: true; assetId: string; transferType: TransferType; startPolicy: 'automatic' | 'manual' }
  | { admitted: false; code: AdmissionRefusal; reason: string };

const refuse = (code: AdmissionRefusal, reason: string): Admission => ({ admitted: false, code, reason });

export function admitTransferRequest(policy: AdmissionPolicy, req: AdmissionRequest): Admission {
  const agreement = Object.hasOwn(policy.agreements, req.agreementId) ? policy.agreements[req.agreementId] : undefined;
  if (!agreement || agreement.counterparty !== req.counterpartyId) {
    return refuse('UnknownAgreement', `no agreement ${req.agreementId} with ${req.counterpartyId}`);
  }
  if (req.assetId !== undefined && req.assetId !== agreement.assetId) {
    return refuse('UnknownAgreement', `agreement ${req.agreementId} does not cover asset ${req.assetId}`);
  }
  if (!Object.hasOwn(policy.assets, agreement.assetId)) return refuse('UnknownAsset', `the asset of agreement ${req.agreementId} is not available`);

  const format = (TRANSFER_TYPES as readonly string[]).includes(req.format) ? (req.format as TransferType) : undefined;
  if (!format || !policy.dataPlanes.some((d) => d.transferTypes.includes(format))) {
    const offered = TRANSFER_TYPES.filter((t) => policy.dataPlanes.some((d) => d.transferTypes.includes(t)));
    return refuse('UnsupportedFormat', `format ${req.format} is not offered; offered: ${offered.join(', ') || 'none'}`);
  }

  const problem = dataAddressProblem(policy, format, req.dataAddress);
  if (problem) return refuse('InvalidDataAddress', problem);
  return { admitted: true, assetId: agreement.assetId, transferType: format, startPolicy: agreement.start ?? 'automatic' };
}

/** What is wrong with the data address for this format, if anything. */
function dataAddressProblem(policy: AdmissionPolicy, format: TransferType, address: DataAddress | undefined): string | undefined {
  if (isPull(format)) return address ? `${format} takes no dataAddress: the consumer pulls with the EDR the provider sends` : undefined;
  if (!address) return `${format} needs a dataAddress`;
  const parsed = DataAddressSchema.safeParse(address);
  if (!parsed.success) return 'dataAddress is malformed';
  const wanted = format.slice(0, format.lastIndexOf('-'));
  if (address.endpointType !== wanted) return `${format} needs a ${wanted} dataAddress, not ${address.endpointType}`;
  if (address.endpointType === 'HttpData') {
    try {
      parseHttpUrl(address.endpoint, 'dataAddress endpoint');
    } catch (e) {
      return e instanceof UrlPolicyError ? e.message : 'dataAddress endpoint is not a valid URL';
    }
    return undefined;
  }
  if (address.endpointType === 'File') {
    const raw = address.endpoint.replace(/\\/g, '/');
    const absolute = path.posix.isAbsolute(raw) || path.win32.isAbsolute(address.endpoint);
    if (raw.split('/').includes('..') || (!absolute && !isConfinedPath(address.endpoint)) || /^[A-Za-z]:/.test(raw)) {
      return 'a File dataAddress must be a path without ".." segments inside the data plane root';
    }
    if (insideAnAssetDirectory(policy, raw)) return 'a File dataAddress must not lie inside a directory that holds an asset';
  }
  return undefined;
}

/**
 * Is the destination inside the directory of a configured File asset? Both absolute: compared as
 * they are. Otherwise one of them is relative to the data plane's root, which the control plane
 * does not know (it is an ancestor of every absolute path there), so the check errs on the side of
 * refusing: a relative destination is refused under any trailing part of an absolute asset's
 * directory (`/srv/files/provider/assets` → `assets`, `provider/assets`, …), an absolute destination
 * wherever a relative asset's directory appears in it. An asset directly in the root does not make
 * the whole root off limits: keep assets in directories of their own.
 */
function insideAnAssetDirectory(policy: AdmissionPolicy, destination: string): boolean {
  const destAbsolute = path.posix.isAbsolute(destination);
  const dest = segments(path.posix.normalize(destination));
  const startsWith = (run: string[], at: number) => run.length > 0 && at + run.length <= dest.length && run.every((s, i) => dest[at + i] === s);
  return Object.values(policy.assets).some((asset) => {
    if (asset.endpointType !== 'File') return false;
    const endpoint = asset.endpoint.replace(/\\/g, '/');
    const assetAbsolute = path.posix.isAbsolute(endpoint);
    const dir = segments(path.posix.dirname(path.posix.normalize(endpoint)));
    if (assetAbsolute && destAbsolute) return startsWith(dir, 0);
    if (!assetAbsolute && !destAbsolute) return startsWith(dir, 0);
    if (assetAbsolute) return dir.some((_, i) => startsWith(dir.slice(i), 0));
    return dest.some((_, at) => startsWith(dir, at));
  });
}

const segments = (p: string): string[] => p.split('/').filter((s) => s !== '' && s !== '.');

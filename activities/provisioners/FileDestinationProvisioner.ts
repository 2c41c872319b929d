import { readdir, rm, unlink } from 'node:fs/promises';
import path from 'node:path';
import { withProperty, type DataAddress } from '../../src/DataAddress.js';
import { CREATE_DIRECTORY, FileAddressError, resolveInRoot } from '../../src/FileAddress.js';
import { IdSchema } from '../../src/schemas/ids.js';
import {
  matches,
  ProvisionRejected,
  type DeprovisionRequest,
  type ProvisionerMatch,
  type ProvisionRequest,
  type ProvisionResult,
  type ProvisionSide,
  type Provisioner,
  type Role,
} from '../../src/Provisioner.js';
import { mkdirInside, realPathInside } from '../transfer/confinement.js';
import { claimFlowDirectory, DestinationRefused, DONE_RECORD, FLOW_MARKER } from '../transfer/FlowDirectory.js';

/**
 * Gives every flow its own directory under the requested File destination, so concurrent or
 * repeated transfers into the same folder never collide, and a failed flow can be cleaned up
 * without touching anything else.
 */
export class FileDestinationProvisioner implements Provisioner {
  readonly name = 'file-destination';
  readonly match: ProvisionerMatch = { name: this.name, side: 'destination', endpointTypes: ['File'] };
  readonly #root: string;

  constructor(opts: { root: string }) {
    if (!opts.root) throw new Error('FileDestinationProvisioner needs a root directory');
    this.#root = path.resolve(opts.root);
  }

  appliesTo(role: Role, side: ProvisionSide, address: DataAddress): boolean {
    return matches(this.match, role, side, address);
  }

  async provision(request: ProvisionRequest): Promise<ProvisionResult> {
    // The flow id becomes a path segment: only the safe id alphabet may get there.
    if (!IdSchema.safeParse(request.flowId).success) {
      throw new ProvisionRejected(`flow id ${JSON.stringify(request.flowId)} cannot name a directory`);
    }
    const base = this.#resolve(request.address.endpoint);
    const dir = path.join(base, request.flowId);
    let created: boolean;
    try {
      created = await mkdirInside(this.#root, dir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // A file where a directory must be: no retry will change that.
      if (code === 'EEXIST' || code === 'ENOTDIR') {
        throw new ProvisionRejected(`cannot create flow directory under File endpoint ${JSON.stringify(request.address.endpoint)}: a path component is not a directory`);
      }
      throw err;
    }
    if (!created) throw new ProvisionRejected(this.#symlinkEscape(request.address.endpoint));
    // the marker makes it a flow directory: a push accepts `createDirectory: false` only for one
    let claimed: boolean;
    try {
      claimed = await claimFlowDirectory(dir, request.flowId, { fresh: false });
    } catch (err) {
      if (err instanceof DestinationRefused) throw new ProvisionRejected(err.message);
      throw err;
    }
    if (!claimed) throw new ProvisionRejected(`${JSON.stringify(dir)} exists and was not made for flow ${request.flowId}`);
    return {
      // the directory exists until released: a push that only begins after the release must not make it again
      address: withProperty({ ...request.address, endpoint: dir }, CREATE_DIRECTORY, 'false'),
      pending: false,
      resource: { path: dir },
    };
  }

  async deprovision(request: DeprovisionRequest): Promise<{ pending: boolean }> {
    const dir = request.resource.path;
    if (!dir) throw new ProvisionRejected(`resource of flow ${request.flowId} has no path to release`);
    // Re-check confinement: the resource came back through a workflow and the root may have changed.
    const resolved = this.#resolve(dir);
    if (resolved === this.#root || resolved !== path.resolve(dir)) {
      throw new ProvisionRejected(`refusing to release ${JSON.stringify(dir)}: not a flow directory below the root`);
    }
    try {
      if (!(await realPathInside(this.#root, resolved, { strict: true }))) throw new ProvisionRejected(this.#symlinkEscape(dir));
      if (request.reason === 'completed' || request.reason === 'suspended') {
        // Delivered data belongs to the consumer; only unfinished partial files are ours to remove.
        // once completed, the flow's own bookkeeping (marker, delivery record) goes too
        const bookkeeping = request.reason === 'completed' ? [FLOW_MARKER, DONE_RECORD] : [];
        for (const entry of await readdir(resolved, { withFileTypes: true })) {
          if ((entry.isFile() || entry.isSymbolicLink()) && (entry.name.endsWith('.part') || bookkeeping.includes(entry.name))) {
            await unlinkIfPresent(path.join(resolved, entry.name));
          }
        }
      } else {
        await rm(resolved, { recursive: true, force: true });
      }
    } catch (err) {
      // Already gone: releasing is idempotent.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    return { pending: false };
  }

  #resolve(endpoint: string): string {
    try {
      return resolveInRoot(this.#root, endpoint);
    } catch (err) {
      if (err instanceof FileAddressError) throw new ProvisionRejected(err.message);
      throw err;
    }
  }

  #symlinkEscape(endpoint: string): string {
    return `File endpoint ${JSON.stringify(endpoint)} leads outside the data-plane root ${JSON.stringify(this.#root)} through a symlink`;
  }
}

async function unlinkIfPresent(file: string): Promise<void> {
  try {
    await unlink(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

import { EDR_PROVISIONER } from '../../src/DataFlow.js';
import { HTTP_EDR_ENDPOINT_TYPE, property, UNISSUED_EDR_PREFIX, type DataAddress } from '../../src/DataAddress.js';
import { matches, type DeprovisionRequest, type ProvisionerMatch, type ProvisionRequest, type ProvisionResult, type Provisioner, type ProvisionSide, type Role } from '../../src/Provisioner.js';
import type { EdrTokens } from '../pull/EdrTokens.js';
import type { PullSessions } from '../pull/PullSessions.js';

/**
 * Issues the endpoint data reference of a provider's pull: our public endpoint plus a fresh token
 * for this flow. It rewrites the pull's destination (an unissued EDR) into the real one. Release
 * revokes the token: the public endpoint serves only tokens whose provision the DataFlow still holds
 * (so revocation survives any restart), and the release cuts the responses still streaming under it.
 *
 * The EDR's properties follow EDC's: `authorization` (the token, sealed in histories like every
 * credential), `authType` bearer, `expiresAt` (ISO time), and `refreshToken` (sealed too) with the
 * `refreshEndpoint` that trades it for a new access token before that expires.
 */
/** Where an EDR's refresh token is traded for a new access token. */
export const refreshUrlOf = (endpoint: string): string => `${endpoint.replace(/\/+$/, '')}/refresh`;

export class EdrProvisioner implements Provisioner {
  readonly name = EDR_PROVISIONER;
  readonly match: ProvisionerMatch = { name: EDR_PROVISIONER, side: 'destination', roles: ['PROVIDER'], endpointTypes: [HTTP_EDR_ENDPOINT_TYPE], endpointPrefix: UNISSUED_EDR_PREFIX };

  constructor(
    private readonly opts: {
      /** The public endpoint consumers fetch from. */
      publicUrl: () => string;
      tokens: EdrTokens;
      sessions: PullSessions;
    },
  ) {}

  appliesTo(role: Role, side: ProvisionSide, address: DataAddress): boolean {
    return matches(this.match, role, side, address);
  }

  async provision(req: ProvisionRequest): Promise<ProvisionResult> {
    const audience = property(req.address, 'audience');
    const { token, refreshToken, claims } = await this.opts.tokens.issue({ flowId: req.flowId, workflowId: req.workflowId, ...(audience ? { audience } : {}) });
    const endpoint = this.opts.publicUrl();
    return {
      address: {
        endpointType: HTTP_EDR_ENDPOINT_TYPE,
        endpoint,
        endpointProperties: [
          { name: 'authorization', value: token },
          { name: 'authType', value: 'bearer' },
          { name: 'expiresAt', value: claims.expiresAt.toISOString() },
          // a pull that outlives the access token renews it here, for as long as the flow holds the EDR
          { name: 'refreshToken', value: refreshToken },
          { name: 'refreshEndpoint', value: refreshUrlOf(endpoint) },
        ],
      },
      pending: false,
      resource: { tokenId: claims.tokenId, expiresAt: claims.expiresAt.toISOString() },
    };
  }

  async deprovision(req: DeprovisionRequest): Promise<{ pending: boolean }> {
    // the DataFlow marks the resource released, which refuses new requests; cut those under way
    if (req.resource.tokenId) this.opts.sessions.revoke(req.resource.tokenId);
    return { pending: false };
  }
}

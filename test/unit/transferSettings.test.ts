import { describe, expect, it } from 'vitest';
import { MockActivityEnvironment } from '@temporalio/testing';
import { Client, Connection } from '@temporalio/client';
import { createControlPlaneActivities } from '../../activities/controlPlane.js';
import { TransferRequestSchema } from '../../src/client.js';
import { ControlPlaneConfigSchema } from '../../src/config.js';
import { TransferSettingsOverridesSchema, TransferSettingsSchema } from '../../src/schemas/settings.js';
import { TRANSFER_SETTINGS_DEFAULTS } from '../../src/settings.js';

/** A transfer overrides the settings it names; every other one stays the connector's (its worker config's). */
describe('transfer settings', () => {
  const config = ControlPlaneConfigSchema.parse({
    connectorId: 'consumer',
    dataPlanes: [{ id: 'dp', transferTypes: ['File-PUSH'] }],
    transfer: { requestedTimeout: '2m', staleRetries: 9 },
  });
  const acts = createControlPlaneActivities({ config, client: new Client({ connection: Connection.lazy({ address: '127.0.0.1:1', connectTimeout: '1s' }) }), transports: [] });

  it('overrides given at the client keep the worker config for the rest', async () => {
    const request = TransferRequestSchema.parse({
      connectorId: 'consumer',
      counterpartyAddress: 'temporal://provider',
      agreementId: 'ag',
      assetId: 'a',
      transferType: 'File-PUSH',
      dataDestination: { endpointType: 'File', endpoint: 'inbox' },
      settings: { callbackRetries: 5 },
    });
    expect(request.settings).toEqual({ callbackRetries: 5 });
    // a provider process under no agreement: refused at once, with its settings (no data plane is looked up)
    const opened: { settings: unknown } = await new MockActivityEnvironment().run(acts.openTransfer, {
      role: 'PROVIDER' as const,
      processId: 'p-1',
      transferType: 'File-PUSH',
      agreementId: 'ag',
      assetId: 'a',
      settings: request.settings,
    });
    expect(opened.settings).toMatchObject({ requestedTimeout: '2m', staleRetries: 9, callbackRetries: 5, counterpartyTimeout: '1h' });
  });

  it('the defaults are one object: the schema fills them from it', () => {
    expect(TransferSettingsSchema.parse({})).toEqual(TRANSFER_SETTINGS_DEFAULTS);
    expect(TransferSettingsOverridesSchema.parse({})).toEqual({});
    expect(TransferSettingsOverridesSchema.safeParse({ requestedTimeout: 'soon' }).success).toBe(false);
    expect(TransferSettingsOverridesSchema.safeParse({ bogus: 1 }).success).toBe(false);
  });
});

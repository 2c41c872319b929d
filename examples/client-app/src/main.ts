import { FerryClient, type TransferDetails, type TransferSummary } from 'ferry';

/**
 * ferry as a library. The connection follows Temporal's conventions (TEMPORAL_ADDRESS,
 * TEMPORAL_NAMESPACE, TEMPORAL_TLS_*, TEMPORAL_API_KEY, temporal.toml profiles), as the ferry CLI
 * and workers do. With `npm run dev` running in the ferry repository, this pushes its demo asset.
 */
const connector = process.env.CONSUMER ?? 'consumer';
const ferry = await FerryClient.connect();
try {
  const { processId, workflowId } = await ferry.startTransfer({
    connectorId: connector,
    counterpartyAddress: process.env.COUNTERPARTY ?? 'temporal://provider',
    agreementId: process.env.AGREEMENT ?? 'demo-agreement',
    assetId: process.env.ASSET ?? 'demo-asset',
    transferType: 'File-PUSH',
    dataDestination: { endpointType: 'File', endpoint: 'consumer/inbox' },
  });
  console.log(`started ${processId} (workflow ${workflowId}) on ${ferry.temporal.address}`);

  const result = await ferry.result(connector, processId);
  console.log(`ended ${result.state}: ${result.reason}`);

  const details: TransferDetails = await ferry.show(connector, processId);
  console.log(`moved ${details.progress?.bytes ?? 0} bytes; ${details.status.history.length} state changes`);

  const recent: TransferSummary[] = await ferry.list({ connectorId: connector, limit: 5 });
  for (const t of recent) console.log(`  ${t.processId}  ${t.state ?? '-'}  ${t.startTime}`);

  process.exitCode = result.state === 'COMPLETED' ? 0 : 1;
} finally {
  await ferry.close();
}

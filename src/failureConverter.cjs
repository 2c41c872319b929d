// The failure converter of every ferry client, worker and workflow bundle (see src/codec.ts):
// messages and stack traces go into an encoded payload, which the payload codec encrypts.
// CommonJS on purpose: the SDK require()s this file by path.
const { DefaultFailureConverter } = require('@temporalio/common');

exports.failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });

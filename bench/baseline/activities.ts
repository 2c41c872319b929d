/** The baseline's activities: nothing but the round trip through Temporal that every activity costs. */
export async function noop(): Promise<void> {}

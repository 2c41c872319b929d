/**
 * The pulls being served right now, by token id. Revoking a token (its EDR is released on suspend,
 * terminate or completion) also cuts the responses still streaming under it: a consumer of a
 * live source must not keep receiving after the transfer stopped. The public endpoint and the EDR
 * provisioner's release share one instance; a flow's activities run on the instance that serves it.
 */
export class PullSessions {
  readonly #open = new Map<string, Set<{ destroy(error?: Error): void }>>();

  /** Registers a response under a token; it leaves the registry when it closes. */
  track(tokenId: string, res: { destroy(error?: Error): void; once(event: 'close', fn: () => void): unknown }): void {
    let set = this.#open.get(tokenId);
    if (!set) this.#open.set(tokenId, (set = new Set()));
    set.add(res);
    res.once('close', () => {
      set.delete(res);
      if (!set.size && this.#open.get(tokenId) === set) this.#open.delete(tokenId);
    });
  }

  /** Ends every response under the token; returns how many were cut. */
  revoke(tokenId: string): number {
    const open = [...(this.#open.get(tokenId) ?? [])];
    this.#open.delete(tokenId);
    for (const res of open) res.destroy(new Error('token revoked'));
    return open.length;
  }

  get size(): number {
    let n = 0;
    for (const s of this.#open.values()) n += s.size;
    return n;
  }
}

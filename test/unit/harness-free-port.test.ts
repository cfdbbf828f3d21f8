// The harness's start retry: another free port while the one picked was taken before the server bound it.
import { describe, expect, it } from 'vitest';
import { PortInUseError, retryOnPortInUse } from '../harness/free-port.js';

describe('retryOnPortInUse', () => {
  it('tries again on a port in use, numbering the attempts, and returns the first start that binds', async () => {
    const seen: number[] = [];
    const result = await retryOnPortInUse(async (n) => {
      seen.push(n);
      if (n < 3) throw new PortInUseError(5000 + n);
      return 'started';
    });
    expect(result).toBe('started');
    expect(seen).toEqual([1, 2, 3]);
  });

  it('gives up after 5 ports in use, and at once on any other failure', async () => {
    let calls = 0;
    await expect(retryOnPortInUse(async () => { calls++; throw new PortInUseError('kafka'); })).rejects.toThrow('kafka: port already in use');
    expect(calls).toBe(5);
    calls = 0;
    await expect(retryOnPortInUse(async () => { calls++; throw new Error('initdb failed'); })).rejects.toThrow('initdb failed');
    expect(calls).toBe(1);
  });
});

// The lease's pure parts: its bytes, the takeover decision on an injected monotonic clock, the
// holder's renewal deadline, and which generations make outputs stale.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import { describe, test } from 'node:test';
import {
  decide,
  encodeLease,
  holderDeadline,
  leaseMargin,
  ownerAlive,
  parseLease,
  renewEveryMs,
  type LeaseBody,
  type LeaseView,
} from '../../src/core/lifecycle/lease.js';
import { staleGenerations } from '../../src/core/lifecycle/outputs.js';

const BODY: LeaseBody = {
  owner: { host: 'worker-3', pid: 4242, start: '987654', runId: 'r1', nonce: 'n1' },
  generation: 7,
  archiveGeneration: 5,
  work: 'archive',
  ttlMs: 90_000,
  state: 'held',
  renewal: 2,
  since: '2026-01-02T03:04:05.000Z',
  expires: '2026-01-02T03:05:35.000Z',
};

const TTL = 90_000;
const HOLD = TTL + leaseMargin(TTL); // 90 s + 18 s
const otherHost = { ttlMs: TTL, alive: () => true };

describe('lease', () => {
  test('encodeLease: fixed key order, one line', () => {
    assert.equal(
      encodeLease(BODY),
      '{"owner":{"host":"worker-3","pid":4242,"start":"987654","runId":"r1","nonce":"n1"},' +
        '"generation":7,"archiveGeneration":5,"work":"archive","ttlMs":90000,"state":"held",' +
        '"renewal":2,"since":"2026-01-02T03:04:05.000Z","expires":"2026-01-02T03:05:35.000Z"}\n',
    );
    const noStart = { host: 'worker-3', pid: 4242, runId: 'r1', nonce: 'n1' };
    assert.equal(
      encodeLease({ ...BODY, owner: noStart }).slice(0, 70),
      '{"owner":{"host":"worker-3","pid":4242,"runId":"r1","nonce":"n1"},"gen',
    );
  });

  test('parseLease reads what encodeLease wrote, and nothing that is not a lease', () => {
    assert.deepEqual(parseLease(encodeLease(BODY)), BODY);
    const j = JSON.parse(encodeLease(BODY)) as Record<string, unknown>;
    for (const bad of [
      'not json',
      '42',
      JSON.stringify({ ...j, generation: 0 }),
      JSON.stringify({ ...j, generation: 1.5 }),
      JSON.stringify({ ...j, state: 'taken' }),
      JSON.stringify({ ...j, work: 'plan' }),
      JSON.stringify({ ...j, owner: { host: 'h', pid: 1, runId: 'r' } }),
      JSON.stringify({ ...j, ttlMs: -1 }),
      JSON.stringify({ ...j, since: 5 }),
    ]) {
      assert.equal(parseLease(bad), undefined, bad);
    }
  });

  test('margin and renewal: 5m → 60 s margin, 30 s renewals; short TTLs keep a third', () => {
    assert.equal(leaseMargin(5 * 60_000), 60_000);
    assert.equal(leaseMargin(90_000), 18_000);
    assert.equal(leaseMargin(30_000), 10_000);
    assert.equal(leaseMargin(3_000), 1_000);
    assert.equal(renewEveryMs(5 * 60_000), 30_000);
    // The holder gives up 2 s after its last renewal was sent with a 3 s TTL; 240 s with 5m.
    assert.equal(holderDeadline(1_000, 3_000), 3_000);
    assert.equal(holderDeadline(0, 5 * 60_000), 240_000);
  });

  test('decide: absent → create; released → take at once', () => {
    assert.deepEqual(decide(undefined, undefined, 0, otherHost), { kind: 'create' });
    const released: LeaseView = { etag: 'e1', body: { ...BODY, state: 'released' } };
    const d = decide(released, undefined, 0, otherHost);
    assert.equal(d.kind, 'take');
    assert.equal(d.kind === 'take' && d.why, 'released');
  });

  test('decide: a held lease is taken over only once its ETag stayed unchanged for TTL + margin', () => {
    const view: LeaseView = { etag: 'e1', body: BODY };
    let d = decide(view, undefined, 1_000, otherHost);
    assert.equal(d.kind, 'wait');
    const watch = d.kind === 'wait' ? d.watch : undefined;
    assert.deepEqual(watch, { etag: 'e1', sinceMs: 1_000, startMs: 1_000, renewed: false });
    d = decide(view, watch, 1_000 + HOLD - 1, otherHost);
    assert.equal(d.kind, 'wait');
    d = decide(view, watch, 1_000 + HOLD, otherHost);
    assert.deepEqual(d, { kind: 'take', etag: 'e1', prior: BODY, why: 'expired' });
  });

  test('decide: a renewed ETag restarts the count; renewed all along, the lease is held', () => {
    const first = decide({ etag: 'e1', body: BODY }, undefined, 0, otherHost);
    const w1 = first.kind === 'wait' ? first.watch : undefined;
    const second = decide({ etag: 'e2', body: BODY }, w1, HOLD - 5_000, otherHost);
    assert.equal(second.kind, 'wait');
    const w2 = second.kind === 'wait' ? second.watch : undefined;
    assert.deepEqual(w2, { etag: 'e2', sinceMs: HOLD - 5_000, startMs: 0, renewed: true });
    assert.deepEqual(decide({ etag: 'e2', body: BODY }, w2, HOLD, otherHost), {
      kind: 'held',
      prior: BODY,
    });
  });

  test('decide: the wall-clock times in the body change nothing (a clock 10 minutes off)', () => {
    const shifted = (ms: number): LeaseBody => ({
      ...BODY,
      since: new Date(Date.parse(BODY.since) + ms).toISOString(),
      expires: new Date(Date.parse(BODY.expires) + ms).toISOString(),
    });
    for (const at of [0, HOLD - 1, HOLD]) {
      const base = decide({ etag: 'e1', body: BODY }, undefined, 0, otherHost);
      const w = base.kind === 'wait' ? base.watch : undefined;
      const plain = decide({ etag: 'e1', body: BODY }, w, at, otherHost).kind;
      for (const off of [-600_000, 600_000]) {
        assert.equal(decide({ etag: 'e1', body: shifted(off) }, w, at, otherHost).kind, plain);
      }
    }
  });

  test("decide: a lease of this host whose process is gone is taken at once; another host's is not", () => {
    const dead = spawnSync('true').pid!; // exited and reaped
    const mine = { ...BODY, owner: { ...BODY.owner, host: hostname(), pid: dead } };
    assert.equal(ownerAlive(mine.owner), false);
    const d = decide({ etag: 'e1', body: mine }, undefined, 0, { ttlMs: TTL, alive: ownerAlive });
    assert.equal(d.kind === 'take' && d.why, 'holder gone');
    const far = { ...mine, owner: { ...mine.owner, host: `${hostname()}-other` } };
    assert.equal(
      decide({ etag: 'e1', body: far }, undefined, 0, { ttlMs: TTL, alive: ownerAlive }).kind,
      'wait',
    );
  });

  test('decide: an unreadable lease is judged by its ETag alone, with our TTL', () => {
    const d = decide({ etag: 'e1', body: undefined }, undefined, 0, {
      ttlMs: 3_000,
      alive: () => true,
    });
    const w = d.kind === 'wait' ? d.watch : undefined;
    assert.equal(decide({ etag: 'e1', body: undefined }, w, 3_999, otherHost).kind, 'wait');
    assert.equal(
      decide({ etag: 'e1', body: undefined }, w, 4_000, { ttlMs: 3_000, alive: () => true }).kind,
      'take',
    );
  });

  test('staleGenerations: disagreeing or older generations make outputs stale; unstamped ones keep old rules', () => {
    assert.equal(staleGenerations([undefined, undefined], 4), undefined);
    assert.equal(staleGenerations([3, 3, 3], 3), undefined);
    assert.equal(staleGenerations([4, 4], 3), undefined);
    assert.equal(
      staleGenerations([3, 4, 3], 0),
      'its outputs were written by different lease generations (3, 4)',
    );
    // One not written under a lease (a copy in place, an older version) is judged as before.
    assert.equal(staleGenerations([3, undefined, 3], 3), undefined);
    assert.equal(
      staleGenerations([2, 2], 3),
      "its outputs were written by lease generation 2, older than the lease's last archive (3)",
    );
  });
});

// The Node `etcd3` package (npm, pinned in tests/clients/package.json) against
// a 3-node Placement Center cluster. Endpoints come from PC_ENDPOINTS
// ("host:port,..."); clients are pinned to one member each, so writes made on
// followers are forwarded to the leader.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Etcd3, EtcdLockFailedError, isRecoverableError } from 'etcd3';

const endpoints = process.env.PC_ENDPOINTS.split(',');
const clients = [];
const client = (i) => {
  const c = new Etcd3({ hosts: endpoints[i % endpoints.length], dialTimeout: 5000 });
  clients.push(c);
  return c;
};
const prefix = () => `/node/${randomUUID()}/`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
test.after(() => clients.forEach((c) => c.close()));

test('put on one member, get and prefix-range on another', async () => {
  const p = prefix();
  const a = client(1);
  const b = client(2);
  await a.put(p + 'b').value('2');
  await a.put(p + 'a').value('1');
  assert.equal(await b.get(p + 'a').string(), '1');
  assert.deepEqual(await b.getAll().prefix(p).sort('Key', 'Ascend').keys(), [p + 'a', p + 'b']);
  assert.equal(await b.getAll().prefix(p).count(), 2);
  assert.equal(await b.get(p + 'missing').string(), null);
  await a.delete().prefix(p);
  assert.equal(await b.getAll().prefix(p).count(), 0);
});

test('txn: compare then/else', async () => {
  const p = prefix();
  const c = client(0);
  await c.put(p + 't').value('v1');
  const ok = await c.if(p + 't', 'Value', '==', 'v1').then(c.put(p + 't').value('v2')).else(c.delete().key(p + 't')).commit();
  assert.equal(ok.succeeded, true);
  const no = await c.if(p + 't', 'Value', '==', 'v1').then(c.put(p + 't').value('x')).else(c.delete().key(p + 't')).commit();
  assert.equal(no.succeeded, false);
  assert.equal(await c.get(p + 't').string(), null);
});

test('software transactional memory retries on conflict and commits', async () => {
  const p = prefix();
  const c = client(1);
  await c.put(p + 'n').value('0');
  await Promise.all(
    [0, 1, 2, 3, 4].map(() =>
      c.stm({ retries: 20 }).transact(async (tx) => {
        const n = Number(await tx.get(p + 'n').string());
        await tx.put(p + 'n').value(String(n + 1));
      }),
    ),
  );
  assert.equal(await c.get(p + 'n').string(), '5');
});

test('lease: keys attached, keepalive past the ttl, revoke deletes them', async () => {
  const p = prefix();
  const c = client(2);
  const lease = c.lease(2, { autoKeepAlive: true });
  await lease.put(p + 'l').value('v');
  const id = await lease.grant();
  await sleep(4000);
  assert.equal(await client(0).get(p + 'l').string(), 'v');
  const ttl = await c.leaseClient.leaseTimeToLive({ ID: id, keys: true });
  assert.equal(ttl.grantedTTL, '2');
  assert.deepEqual(ttl.keys.map((k) => k.toString()), [p + 'l']);
  assert.ok((await c.leaseClient.leaseLeases()).leases.some((l) => l.ID === id));
  await lease.revoke();
  assert.equal(await c.get(p + 'l').string(), null);
});

test('lease without keepalive expires and takes its key', async () => {
  const p = prefix();
  const c = client(0);
  const lease = c.lease(1, { autoKeepAlive: false });
  await lease.put(p + 'gone').value('v');
  const deadline = Date.now() + 15000;
  while ((await c.get(p + 'gone').string()) !== null) {
    assert.ok(Date.now() < deadline, 'key outlived its 1 s lease by 15 s');
    await sleep(200);
  }
});

test('watch: puts and deletes in order, and history from a revision', async () => {
  const p = prefix();
  const c = client(1);
  const w = client(2);
  const watcher = await w.watch().prefix(p).create();
  const seen = [];
  const done = new Promise((resolve) => {
    watcher.on('put', (kv) => { seen.push(['put', kv.value.toString()]); if (seen.length === 3) resolve(); });
    watcher.on('delete', () => { seen.push(['delete']); if (seen.length === 3) resolve(); });
  });
  const first = await c.put(p + 'w').value('1');
  await c.put(p + 'w').value('2');
  await c.delete().key(p + 'w');
  await done;
  await watcher.cancel();
  assert.deepEqual(seen, [['put', '1'], ['put', '2'], ['delete']]);

  const replay = await w.watch().key(p + 'w').startRevision(first.header.revision).create();
  const values = [];
  await new Promise((resolve) => {
    replay.on('data', (res) => {
      for (const ev of res.events) values.push(ev.type);
      if (values.length >= 3) resolve();
    });
  });
  await replay.cancel();
  assert.deepEqual(values, ['Put', 'Put', 'Delete']);
});

test('lock: exclusive while held, free after release', async () => {
  const name = 'node-lock-' + randomUUID();
  const a = client(0).lock(name).ttl(10);
  const b = client(1).lock(name).ttl(10);
  await a.acquire();
  await assert.rejects(b.acquire(), EtcdLockFailedError);
  await a.release();
  await b.acquire();
  await b.release();
});

test('election: one leader, observed, then handed over on resign', async () => {
  const name = 'node-election-' + randomUUID();
  const e1 = client(0).election(name, 5);
  const e2 = client(2).election(name, 5);
  const c1 = e1.campaign('one');
  await c1.wait();
  assert.equal(await e2.leader(), 'one');
  const observer = await e2.observe();
  const c2 = e2.campaign('two');
  const changed = new Promise((resolve) => observer.on('change', (v) => v === 'two' && resolve()));
  await c1.resign();
  await c2.wait();
  await changed;
  assert.equal(await e1.leader(), 'two');
  await c2.resign();
  observer.cancel();
});

test('cluster: member list and status agree on the leader', async () => {
  const { members } = await client(0).cluster.memberList({});
  assert.equal(members.length, 3);
  for (const m of members) {
    assert.ok(m.clientURLs.length > 0, JSON.stringify(m));
    assert.ok(m.peerURLs.length > 0, JSON.stringify(m));
  }
  const statuses = await Promise.all([0, 1, 2].map((i) => client(i).maintenance.status()));
  assert.equal(new Set(statuses.map((s) => s.leader)).size, 1);
  assert.ok(members.some((m) => m.ID === statuses[0].leader));
  for (const s of statuses) assert.ok(Number(s.raftIndex) > 0 && s.version);
});

test('errors: a compacted revision is reported as etcd reports it', async () => {
  const p = prefix();
  const c = client(0);
  const r1 = await c.put(p + 'k').value('1');
  const r2 = await c.put(p + 'k').value('2');
  await c.kv.compact({ revision: r2.header.revision });
  await assert.rejects(c.get(p + 'k').revision(r1.header.revision).string(), (err) => {
    assert.match(err.message, /compacted/);
    assert.equal(isRecoverableError(err), false);
    return true;
  });
});

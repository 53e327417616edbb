"""The Python `etcd3` package (PyPI, pinned in tests/clients/run.sh) against a
3-node Placement Center cluster. Endpoints come from PC_ENDPOINTS
("host:port,host:port,..."); each test talks to the member it names, so
forwarding to the leader is exercised too."""

import os
import threading
import time
import unittest
import uuid

import etcd3
import grpc
from etcd3 import etcdrpc

ENDPOINTS = [e.rsplit(":", 1) for e in os.environ["PC_ENDPOINTS"].split(",")]


def client(i=0):
    host, port = ENDPOINTS[i % len(ENDPOINTS)]
    return etcd3.client(host=host, port=int(port), timeout=10)


class KV(unittest.TestCase):
    def setUp(self):
        self.c = client(1)
        self.p = "/py/%s/" % uuid.uuid4().hex

    def test_put_get_on_one_member_read_on_another(self):
        self.c.put(self.p + "a", "1")
        value, meta = client(2).get(self.p + "a")
        self.assertEqual(value, b"1")
        self.assertEqual(meta.key, (self.p + "a").encode())
        self.assertEqual(meta.version, 1)
        self.assertGreater(meta.mod_revision, 0)

    def test_missing_key_reads_as_none(self):
        value, meta = self.c.get(self.p + "missing")
        self.assertIsNone(value)
        self.assertIsNone(meta)

    def test_prefix_sorted_and_delete_prefix(self):
        for k in ("b", "a", "c"):
            self.c.put(self.p + k, k.upper())
        keys = [m.key for _, m in self.c.get_prefix(self.p, sort_order="ascend")]
        self.assertEqual(keys, [(self.p + k).encode() for k in "abc"])
        desc = [v for v, _ in self.c.get_prefix(self.p, sort_order="descend", sort_target="key")]
        self.assertEqual(desc, [b"C", b"B", b"A"])
        resp = self.c.delete_prefix(self.p)
        self.assertEqual(resp.deleted, 3)
        self.assertEqual(list(self.c.get_prefix(self.p)), [])

    def test_put_prev_kv_and_delete_prev_kv(self):
        self.c.put(self.p + "k", "old")
        resp = self.c.put(self.p + "k", "new", prev_kv=True)
        self.assertEqual(resp.prev_kv.value, b"old")
        self.assertTrue(self.c.delete(self.p + "k"))
        self.assertFalse(self.c.delete(self.p + "k"))

    def test_put_if_not_exists_and_replace(self):
        self.assertTrue(self.c.put_if_not_exists(self.p + "once", "1"))
        self.assertFalse(self.c.put_if_not_exists(self.p + "once", "2"))
        self.assertTrue(self.c.replace(self.p + "once", "1", "3"))
        self.assertFalse(self.c.replace(self.p + "once", "1", "4"))
        self.assertEqual(self.c.get(self.p + "once")[0], b"3")

    def test_txn_compare_then_else(self):
        t = self.c.transactions
        self.c.put(self.p + "t", "v1")
        ok, responses = self.c.transaction(
            compare=[t.value(self.p + "t") == "v1", t.version(self.p + "t") > 0],
            success=[t.put(self.p + "t", "v2"), t.get(self.p + "t")],
            failure=[t.put(self.p + "t", "wrong")],
        )
        self.assertTrue(ok)
        self.assertEqual(responses[1][0][0], b"v2")
        ok, _ = self.c.transaction(
            compare=[t.value(self.p + "t") == "v1"],
            success=[t.put(self.p + "t", "wrong")],
            failure=[t.delete(self.p + "t")],
        )
        self.assertFalse(ok)
        self.assertIsNone(self.c.get(self.p + "t")[0])

    def test_compaction_makes_old_revisions_unreadable(self):
        self.c.put(self.p + "r", "1")
        first = self.c.get(self.p + "r")[1].mod_revision
        self.c.put(self.p + "r", "2")
        # etcd3 0.12's get() takes no revision: its stub does.
        at = lambda rev: self.c.kvstub.Range(
            etcdrpc.RangeRequest(key=(self.p + "r").encode(), revision=rev), 10
        )
        self.assertEqual(at(first).kvs[0].value, b"1")
        last = self.c.get(self.p + "r")[1].mod_revision
        self.c.compact(last)
        with self.assertRaises(grpc.RpcError) as err:
            at(first)
        self.assertEqual(err.exception.code(), grpc.StatusCode.OUT_OF_RANGE)
        self.assertIn("compacted", err.exception.details())


class Leases(unittest.TestCase):
    def setUp(self):
        self.c = client(0)
        self.p = "/py/%s/" % uuid.uuid4().hex

    def test_grant_attach_info_and_revoke_deletes_keys(self):
        lease = self.c.lease(30)
        self.c.put(self.p + "l", "v", lease=lease)
        self.assertGreater(lease.remaining_ttl, 0)
        self.assertLessEqual(lease.remaining_ttl, 30)
        self.assertEqual(lease.granted_ttl, 30)
        self.assertEqual(lease.keys, [(self.p + "l").encode()])
        self.assertEqual(self.c.get(self.p + "l")[1].lease_id, lease.id)
        lease.revoke()
        self.assertIsNone(self.c.get(self.p + "l")[0])

    def test_keepalive_keeps_a_short_lease_past_its_ttl(self):
        lease = self.c.lease(2)
        self.c.put(self.p + "ka", "v", lease=lease)
        for _ in range(8):
            time.sleep(0.5)
            resp = list(lease.refresh())
            self.assertEqual(resp[0].TTL, 2)
        self.assertEqual(client(2).get(self.p + "ka")[0], b"v")
        lease.revoke()

    def test_unrefreshed_lease_expires_and_takes_its_keys(self):
        lease = self.c.lease(1)
        self.c.put(self.p + "gone", "v", lease=lease)
        deadline = time.time() + 15
        while self.c.get(self.p + "gone")[0] is not None:
            self.assertLess(time.time(), deadline, "key outlived its 1 s lease by 15 s")
            time.sleep(0.2)


class Watches(unittest.TestCase):
    def setUp(self):
        self.c = client(2)
        self.p = "/py/%s/" % uuid.uuid4().hex

    def test_watch_iterator_sees_puts_and_deletes_in_order(self):
        events, cancel = self.c.watch_prefix(self.p)
        writer = client(0)

        def write():
            time.sleep(0.3)
            writer.put(self.p + "w", "1")
            writer.put(self.p + "w", "2")
            writer.delete(self.p + "w")

        threading.Thread(target=write).start()
        seen = []
        for ev in events:
            seen.append((type(ev).__name__, ev.value))
            if len(seen) == 3:
                cancel()
        self.assertEqual(
            seen, [("PutEvent", b"1"), ("PutEvent", b"2"), ("DeleteEvent", b"")]
        )

    def test_watch_from_a_past_revision_replays_history(self):
        r1 = self.c.put(self.p + "h", "a").header.revision
        self.c.put(self.p + "h", "b")
        events, cancel = self.c.watch(self.p + "h", start_revision=r1)
        got = []
        for ev in events:
            got.append(ev.value)
            if len(got) == 2:
                cancel()
        self.assertEqual(got, [b"a", b"b"])

    def test_watch_callback_and_cancel(self):
        got = threading.Event()
        wid = self.c.add_watch_callback(self.p + "cb", lambda resp: got.set())
        client(1).put(self.p + "cb", "x")
        self.assertTrue(got.wait(10))
        self.c.cancel_watch(wid)


class Locks(unittest.TestCase):
    def test_lock_is_exclusive_and_released(self):
        name = "py-lock-" + uuid.uuid4().hex
        a = client(0).lock(name, ttl=10)
        b = client(1).lock(name, ttl=10)
        self.assertTrue(a.acquire(timeout=5))
        self.assertTrue(a.is_acquired())
        self.assertFalse(b.acquire(timeout=1))
        a.release()
        self.assertTrue(b.acquire(timeout=5))
        b.release()


class ClusterAndMaintenance(unittest.TestCase):
    def test_member_list_names_three_members_with_urls(self):
        members = list(client(0).members)
        self.assertEqual(len(members), 3)
        for m in members:
            self.assertTrue(m.id)
            self.assertTrue(m.client_urls, m)
            self.assertTrue(m.peer_urls, m)

    def test_status_agrees_on_the_leader(self):
        leaders = {client(i).status().leader.id for i in range(3)}
        self.assertEqual(len(leaders), 1)
        st = client(1).status()
        self.assertGreater(st.raft_index, 0)
        self.assertGreater(st.raft_term, 0)
        self.assertTrue(st.version)

    def test_hash_and_alarm_list(self):
        c = client(0)
        self.assertIsInstance(c.hash(), int)
        self.assertEqual(list(c.list_alarms()), [])


if __name__ == "__main__":
    unittest.main(verbosity=2)

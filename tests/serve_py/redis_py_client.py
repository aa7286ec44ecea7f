"""redis-py (the Python client most Redis users run) against `percore serve`.

  families PORT                  every command family through redis-py, errors included
  crash BIN DIR FSYNC ROUNDS     kill -9 while clients write; restart; check what survived

Driven by tests/serve_py.rs. Exits non-zero with a message on the first mismatch.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import redis


def check(cond, msg):
    if not cond:
        print("FAIL:", msg, file=sys.stderr)
        sys.exit(1)


def families(port):
    r = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
    check(r.ping() is True, "ping")
    check(r.set("s", "v", ex=100) is True, "set ex")
    check(r.get("s") == "v", "get")
    check(95 <= r.ttl("s") <= 100, "ttl")
    check(r.set("s", "w", nx=True) is None, "set nx on existing")
    check(r.set("s", "w", xx=True, get=True) == "v", "set xx get")
    check(r.getdel("s") == "w", "getdel")
    check(r.mset({"a": 1, "b": 2, "c": 3}) is True, "mset")
    check(r.mget(["a", "b", "c", "zz"]) == ["1", "2", "3", None], "mget")
    check(r.incrbyfloat("a", 1.5) == 2.5, "incrbyfloat")
    check(r.decrby("b", 5) == -3, "decrby")
    check(r.append("c", "xyz") == 4 and r.strlen("c") == 4, "append/strlen")
    check(r.delete("a", "b", "nope") == 2, "del counts existing keys")
    check(r.exists("a", "c", "c") == 2, "exists counts repeats")
    check(r.hset("h", mapping={"f1": "1", "f2": "2"}) == 2, "hset mapping")
    check(r.hgetall("h") == {"f1": "1", "f2": "2"}, "hgetall")
    check(r.hincrby("h", "f1", 41) == 42, "hincrby")
    check(sorted(r.hkeys("h")) == ["f1", "f2"] and r.hlen("h") == 2, "hkeys/hlen")
    check(r.hmget("h", ["f1", "zz"]) == ["42", None], "hmget")
    check(r.hdel("h", "f1", "zz") == 1 and r.hexists("h", "f1") is False, "hdel/hexists")
    check(r.rpush("l", "a", "b", "c") == 3 and r.lpush("l", "z") == 4, "push")
    check(r.lrange("l", 0, -1) == ["z", "a", "b", "c"], "lrange")
    check(r.lpop("l") == "z" and r.rpop("l", 2) == ["c", "b"], "pop")
    check(r.lset("l", 0, "A") is True and r.lindex("l", 0) == "A", "lset/lindex")
    check(r.rpush("l", "x", "x", "y") == 4 and r.lrem("l", 0, "x") == 2, "lrem")
    check(r.ltrim("l", 0, 0) is True and r.llen("l") == 1, "ltrim/llen")
    check(r.sadd("s1", "a", "b", "c") == 3 and r.sadd("s2", "b", "c", "d") == 3, "sadd")
    check(r.sinter("s1", "s2") == {"b", "c"}, "sinter")
    check(r.sunion("s1", "s2") == {"a", "b", "c", "d"}, "sunion")
    check(r.sdiff("s1", "s2") == {"a"}, "sdiff")
    check(r.sismember("s1", "a") and r.scard("s1") == 3 and r.srem("s1", "a") == 1, "set ops")
    check(r.type("s1") == "set" and r.type("nope") == "none", "type")
    check(r.expire("s1", 50) is True and r.persist("s1") is True and r.ttl("s1") == -1, "expire/persist")
    check(r.rename("s1", "s3") is True and r.smembers("s3") == {"b", "c"}, "rename")
    check(set(r.scan_iter(match="s*", count=3)) == {"s2", "s3"}, "scan_iter")
    check(sorted(r.keys("*")) == sorted(["c", "h", "l", "s2", "s3"]), "keys")
    check(r.dbsize() == 5, "dbsize")
    check(r.blpop(["l"], timeout=1) == ("l", "A"), "blpop ready")
    check(r.blpop(["l"], timeout=0.1) is None, "blpop timeout")
    try:
        r.lpush("h", "x")
        check(False, "WRONGTYPE expected")
    except redis.ResponseError as e:
        check(str(e).startswith("WRONGTYPE"), f"WRONGTYPE text: {e}")
    try:
        r.execute_command("NOSUCH")
        check(False, "unknown command expected")
    except redis.ResponseError as e:
        check("unknown command" in str(e), f"unknown command text: {e}")
    info = r.info()
    check(info["redis_version"] and info["connected_clients"] >= 1, "info")
    check(r.info("keyspace")["db0"]["keys"] == 4, "info keyspace (l emptied by BLPOP)")
    check(r.config_get("appendfsync") == {"appendfsync": "everysec"}, "config get")
    check(r.client_setname("py") is True and r.client_getname() == "py", "client name")
    check(isinstance(r.client_id(), int), "client id")
    p = r.pipeline(transaction=False)
    for i in range(100):
        p.set(f"p{i}", i)
        p.incr(f"p{i}")
    res = p.execute()
    check(res[1::2] == list(range(1, 101)), "pipeline")
    # redis-py's default pipeline is a MULTI/EXEC transaction: keys on one shard (hash tag).
    t = r.pipeline()
    t.set("{acct}:a", 100).decrby("{acct}:a", 30).incrby("{acct}:b", 30).mget("{acct}:a", "{acct}:b")
    check(t.execute() == [True, 70, 30, ["70", "30"]], "transaction pipeline")
    check(r.flushall() is True and r.dbsize() == 0, "flushall")
    ps = r.pubsub()
    ps.subscribe("chan")
    ps.psubscribe("ch*")
    check(ps.get_message(timeout=2)["type"] == "subscribe", "pubsub subscribe")
    check(ps.get_message(timeout=2)["type"] == "psubscribe", "pubsub psubscribe")
    check(r.publish("chan", "hi") == 2, "publish receivers")
    got = [ps.get_message(timeout=2) for _ in range(2)]
    check(sorted(m["type"] for m in got) == ["message", "pmessage"], f"pubsub messages {got}")
    check(all(m["data"] == "hi" and m["channel"] == "chan" for m in got), f"pubsub payloads {got}")
    ps.close()
    print("families ok")


def start(bin_path, data, fsync):
    p = subprocess.Popen(
        [bin_path, "serve", "--port", "0", "--dir", data, "--workers", "2", "--appendfsync", fsync],
        stdout=subprocess.PIPE,
        env=dict(os.environ, RUST_LOG="warn"),
        text=True,
    )
    line = p.stdout.readline()
    check(line.startswith("listening on "), f"unexpected first line {line!r}")
    port = int(line.split()[2].rsplit(":", 1)[1])
    return p, port


def writer(port, wid, acked, stop):
    """Writes until stopped; records (kind, key, value, ack time) of every acknowledged write."""
    r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
    i = 0
    try:
        while not stop.is_set():
            k = f"w{wid}:{i}"
            kind = i % 4
            if kind == 0:
                r.set(k, f"v{i}" * 8)
            elif kind == 1:
                r.hset(f"h{wid}", f"f{i}", i)
            elif kind == 2:
                r.rpush(f"l{wid}", i)
            else:
                r.incr(f"n{wid}")
            acked.append((kind, i, time.monotonic()))
            i += 1
    except (redis.ConnectionError, redis.TimeoutError, ConnectionResetError):
        pass


def crash(bin_path, data, fsync, rounds):
    max_loss = 0.0
    total = 0
    for rnd in range(rounds):
        p, port = start(bin_path, data, fsync)
        stop = threading.Event()
        acks = [[] for _ in range(3)]
        ts = [threading.Thread(target=writer, args=(port, w, acks[w], stop)) for w in range(3)]
        for t in ts:
            t.start()
        # everysec runs long enough that writes older than the ~1 s window exist to check.
        time.sleep(0.6 + 0.1 * (rnd % 5) + (0 if fsync == "always" else 2.5))
        os.kill(p.pid, signal.SIGKILL)
        killed = time.monotonic()
        p.wait()
        stop.set()
        for t in ts:
            t.join()
        p, port = start(bin_path, data, fsync)
        r = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
        for w in range(3):
            h = r.hgetall(f"h{w}")
            lst = r.lrange(f"l{w}", 0, -1)
            n = int(r.get(f"n{w}") or 0)
            # Every element present is one a client wrote, in order, uncorrupted.
            check(all(v == k[1:] for k, v in h.items()), f"round {rnd}: corrupt hash field")
            check(lst == sorted(lst, key=int), f"round {rnd}: list out of order")
            for kind, i, t in acks[w]:
                if fsync == "always" or t < killed - 1.5:
                    # Must be there: acknowledged after fsync, or long enough before the kill.
                    if kind == 0:
                        check(r.get(f"w{w}:{i}") == f"v{i}" * 8, f"round {rnd}: lost SET w{w}:{i} ({fsync})")
                    elif kind == 1:
                        check(h.get(f"f{i}") == str(i), f"round {rnd}: lost HSET f{i} ({fsync})")
                    elif kind == 2:
                        check(str(i) in lst, f"round {rnd}: lost RPUSH {i} ({fsync})")
                    total += 1
            incrs = [t for kind, i, t in acks[w] if kind == 3]
            if fsync == "always":
                check(n >= len(incrs), f"round {rnd}: INCR lost ({n} < {len(incrs)})")
            elif incrs:
                # Writes after the last one that survived were lost: how long before the kill?
                check(n >= len([t for t in incrs if t < killed - 1.5]), f"round {rnd}: INCR lost more than ~1 s")
                if n < len(incrs):
                    lost_from = incrs[n] if n < len(incrs) else killed
                    max_loss = max(max_loss, killed - lost_from)
            # The next round continues from what survived.
            r.delete(*[f"w{w}:{i}" for kind, i, _ in acks[w] if kind == 0])
            r.delete(f"h{w}", f"l{w}", f"n{w}")
        os.kill(p.pid, signal.SIGTERM)
        check(p.wait(timeout=30) == 0, "clean stop after the check")
    print(f"crash ok: {rounds} rounds, {total} acknowledged writes checked, appendfsync {fsync}, longest loss window {max_loss:.3f} s")


if __name__ == "__main__":
    if sys.argv[1] == "families":
        families(int(sys.argv[2]))
    elif sys.argv[1] == "crash":
        crash(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        sys.exit(f"unknown mode {sys.argv[1]}")

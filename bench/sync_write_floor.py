#!/usr/bin/env python3
"""Times one synchronous 4 KiB write at a time, for bench/sync-write-floor.sh.

  sync_write_floor.py write DIR N        O_DSYNC pwrite of 4 KiB at random 4 KiB offsets of a 1 MiB file
                                         in DIR, one at a time (what fio's qd-1 O_DSYNC test does)
  sync_write_floor.py two_flushes DIR N  pwrite + fdatasync of 4 KiB in two files of DIR at once (a second
                                         thread does the second), timed until both are done: the least a
                                         mirror whose two copies share this machine's one disk can pay
  sync_write_floor.py tcp_rt N           a 4 KiB message and a 16-byte answer over a loopback TCP socket
                                         (TCP_NODELAY, answered by a child process): the network's floor

Prints one line: "p50 P p90 P p99 P n N" in microseconds. The same interpreter overhead is in every mode.
"""
import os
import random
import socket
import sys
import threading
import time

SIZE = 4096


def prepared(path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    os.pwrite(fd, b"\0" * (1 << 20), 0)  # overwrites, not extent conversions, are measured
    os.fsync(fd)
    return fd


def report(lat):
    lat.sort()
    n = len(lat)
    print("p50 %.0f p90 %.0f p99 %.0f n %d" % (lat[n // 2], lat[n * 9 // 10], lat[n * 99 // 100], n))


def write(directory, n):
    path = os.path.join(directory, "floor-write")
    os.close(prepared(path))
    fd = os.open(path, os.O_RDWR | os.O_DSYNC)
    buf = os.urandom(SIZE)
    rnd = random.Random(1)
    lat = []
    for _ in range(n):
        off = rnd.randrange(256) * SIZE
        t0 = time.perf_counter_ns()
        os.pwrite(fd, buf, off)
        lat.append((time.perf_counter_ns() - t0) / 1000)
    os.close(fd)
    os.unlink(path)
    report(lat)


def two_flushes(directory, n):
    a = prepared(os.path.join(directory, "floor-a"))
    b = prepared(os.path.join(directory, "floor-b"))
    buf = os.urandom(SIZE)
    go, done = threading.Event(), threading.Event()
    state = {"off": 0, "stop": False}

    def second():
        while go.wait(10):
            go.clear()
            if state["stop"]:
                return
            os.pwrite(b, buf, state["off"])
            os.fdatasync(b)
            done.set()

    t = threading.Thread(target=second)
    t.start()
    rnd = random.Random(1)
    lat = []
    for _ in range(n):
        state["off"] = rnd.randrange(256) * SIZE
        t0 = time.perf_counter_ns()
        go.set()
        os.pwrite(a, buf, state["off"])
        os.fdatasync(a)
        if not done.wait(10):
            sys.exit("second flush did not finish within 10 s")
        done.clear()
        lat.append((time.perf_counter_ns() - t0) / 1000)
    state["stop"] = True
    go.set()
    t.join(10)
    for fd, name in ((a, "floor-a"), (b, "floor-b")):
        os.close(fd)
        os.unlink(os.path.join(directory, name))
    report(lat)


def recv_exactly(sock, n):
    got = bytearray()
    while len(got) < n:
        chunk = sock.recv(n - len(got))
        if not chunk:
            raise EOFError
        got += chunk
    return got


def tcp_rt(n):
    # The answering side is a child process: two threads of one interpreter would take turns on its
    # lock and time that, not the socket.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(10)
    pid = os.fork()
    if pid == 0:
        try:
            conn, _ = listener.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            while True:
                recv_exactly(conn, SIZE)
                conn.sendall(b"a" * 16)
        except (EOFError, OSError):
            pass
        os._exit(0)
    s = socket.create_connection(listener.getsockname(), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    msg = os.urandom(SIZE)
    lat = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        s.sendall(msg)
        recv_exactly(s, 16)
        lat.append((time.perf_counter_ns() - t0) / 1000)
    s.close()
    listener.close()
    os.waitpid(pid, 0)
    report(lat)


def main():
    if len(sys.argv) == 4 and sys.argv[1] in ("write", "two_flushes"):
        {"write": write, "two_flushes": two_flushes}[sys.argv[1]](sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 3 and sys.argv[1] == "tcp_rt":
        tcp_rt(int(sys.argv[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()

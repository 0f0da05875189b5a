#!/usr/bin/env python3
"""Splits one replicated O_DSYNC write into stages, from `perf script` of raw_syscalls events.

  sync_write_stages.py STAGES.txt DAEMON_COMM

STAGES.txt: `perf script -F comm,tid,time,event,trace` of raw_syscalls:sys_enter/sys_exit recorded
system-wide while bench/sync_write_floor.py (comm python3) wrote through a hamirror-fs primary whose
FUSE workers have the command name DAEMON_COMM (the binary's name, at most 15 characters); its
threads hm-acks and, on the secondary, hm-repl-server are found by name. For each application pwrite
(past the first and last 100) the first matching system calls inside it are taken as stage marks:
the worker's read of the request, its pwrite, sendmsg and fdatasync; the secondary's recvmsg of the
op, pwrite, fdatasync and sendmsg of the ack; hm-acks's recvmsg of the ack and writev of the reply.
A write whose marks are not all found (e.g. the reply written by the worker because its own flush
ended last) is counted as incomplete and left out. Prints a Markdown table of p50/p90 per stage (µs).
The tracing itself adds a few µs per system call: compare totals with an untraced run.
"""
import re
import sys

NR = {"read": 0, "write": 1, "pwrite64": 18, "writev": 20, "sendmsg": 46, "recvmsg": 47, "fdatasync": 75}
LINE = re.compile(r"^\s*(\S.*?)\s+(\d+)\s+([\d.]+):\s+raw_syscalls:sys_(enter|exit):\s+NR (\d+) (?:\((.*)\)|= (-?\d+))")


def load(path):
    events = []
    with open(path) as f:
        for line in f:
            m = LINE.match(line)
            if not m or m.group(1) == "perf":
                continue
            ret = int(m.group(7)) if m.group(7) is not None else None
            events.append((float(m.group(3)) * 1e6, m.group(1), int(m.group(2)), m.group(4), int(m.group(5)), ret))
    events.sort(key=lambda e: e[0])
    return events


def marks(segment, daemon):
    d = {}
    worker = None
    for t, comm, tid, kind, nr, ret in segment:
        key = kind
        if comm == daemon:
            if worker is None and kind == "exit" and nr == NR["read"] and ret and ret > 4096:
                worker = tid
                d["w_req"] = t
            elif tid == worker:
                name = {NR["pwrite64"]: "w_pwrite", NR["sendmsg"]: "w_send", NR["fdatasync"]: "w_flush"}.get(nr)
                if name:
                    d.setdefault(name + "_" + key, t)
        elif comm == "hm-repl-server":
            if kind == "exit" and nr == NR["recvmsg"] and ret and ret > 4096:
                d.setdefault("s_recv", t)
            name = {NR["pwrite64"]: "s_pwrite", NR["fdatasync"]: "s_flush", NR["sendmsg"]: "s_send"}.get(nr)
            if name and "s_recv" in d:
                d.setdefault(name + "_" + key, t)
        elif comm == "hm-acks":
            if kind == "exit" and nr == NR["recvmsg"] and ret and 20 < ret < 4096 and "s_send_enter" in d:
                d.setdefault("a_recv", t)
            if nr == NR["writev"] and "a_recv" in d:
                d.setdefault("a_reply_" + key, t)
    return d


STAGES = [
    ("application write -> worker has the request", "t0", "w_req"),
    ("worker: request -> local pwrite starts", "w_req", "w_pwrite_enter"),
    ("worker: pwrite, fstat (time fix) -> sendmsg starts", "w_pwrite_enter", "w_send_enter"),
    ("worker: sendmsg of the op", "w_send_enter", "w_send_exit"),
    ("sendmsg done -> secondary received it", "w_send_exit", "s_recv"),
    ("secondary: received -> pwrite starts (parse, checks)", "s_recv", "s_pwrite_enter"),
    ("secondary: pwrite, time fix -> fdatasync starts", "s_pwrite_enter", "s_flush_enter"),
    ("secondary: fdatasync", "s_flush_enter", "s_flush_exit"),
    ("secondary: fdatasync done -> sendmsg of the ack", "s_flush_exit", "s_send_enter"),
    ("ack sent -> hm-acks received it", "s_send_enter", "a_recv"),
    ("hm-acks: received -> reply writev starts", "a_recv", "a_reply_enter"),
    ("writev of the reply to /dev/fuse", "a_reply_enter", "a_reply_exit"),
    ("reply written -> application write returns", "a_reply_exit", "t1"),
    ("(beside) primary: fdatasync", "w_flush_enter", "w_flush_exit"),
    ("(beside) primary fdatasync start -> secondary fdatasync start", "w_flush_enter", "s_flush_enter"),
    ("total: application pwrite", "t0", "t1"),
]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    events = load(sys.argv[1])
    daemon = sys.argv[2]
    writes, cur = [], None
    for i, (t, comm, _tid, kind, nr, _ret) in enumerate(events):
        if comm == "python3" and nr == NR["pwrite64"]:
            if kind == "enter":
                cur = (i, t)
            elif cur:
                writes.append((cur[0], i, cur[1], t))
                cur = None
    values = {name: [] for name, _, _ in STAGES}
    incomplete = 0
    for i0, i1, t0, t1 in writes[100:-100]:
        d = marks(events[i0:i1 + 1], daemon)
        d["t0"], d["t1"] = t0, t1
        if not all(a in d and b in d for _, a, b in STAGES):
            incomplete += 1
            continue
        for name, a, b in STAGES:
            values[name].append(d[b] - d[a])
    print("| stage | p50 µs | p90 µs |")
    print("|---|--:|--:|")
    for name, _, _ in STAGES:
        v = sorted(values[name])
        if v:
            print("| %s | %.0f | %.0f |" % (name, v[len(v) // 2], v[len(v) * 9 // 10]))
    print()
    print("%d writes split, %d left out (marks missing: see the script's header)" %
          (len(values["total: application pwrite"]), incomplete))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""linkem: a link emulator in user space for the lab (delay and loss without the kernel's sch_netem).

Forwards Ethernet frames between two interfaces of the lab's bridge namespace: NODE_IF (the bridge-side
end of a node's link, taken off the bridge) and BRIDGE_IF (a veth whose other end is on the bridge).
Frames coming from the node may be dropped (loss, every kind of frame, as netem on the node's egress
would) and IPv4 frames to one of the listed addresses are delayed (the other nodes: client traffic is
not); frames towards the node pass at once. Both sockets use PACKET_VNET_HDR, so large (GSO) frames
and frames whose checksum is left to the hardware pass through unchanged.

Settings come from STATE ("DELAY_MS LOSS_PERCENT ADDR,ADDR,..."), read at start and again on SIGHUP.
Counters go to STATS ("from_node=N to_node=N delayed=N dropped=N send_errors=N") every second and on
SIGHUP. Runs until SIGTERM, or MAX_HOURS (a bound, default 24).

usage: linkem.py NODE_IF BRIDGE_IF STATE STATS
"""
import collections
import os
import random
import select
import signal
import socket
import sys
import time

SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
ETH_P_ALL = 0x0003
VNET_HDR_LEN = 10  # struct virtio_net_hdr
MAX_FRAME = VNET_HDR_LEN + 65536 + 64
MAX_QUEUED = 20000  # frames waiting out their delay (a bound on memory; more are dropped)
MAX_HOURS = float(os.environ.get("LINKEM_MAX_HOURS", "24"))


def open_socket(ifname):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
    s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)  # never our own sends back
    s.bind((ifname, 0))
    s.setblocking(False)
    return s


def read_state(path):
    with open(path) as f:
        fields = f.read().split()
    delay_ms = float(fields[0]) if fields else 0.0
    loss = float(fields[1]) if len(fields) > 1 else 0.0
    addrs = set()
    if len(fields) > 2:
        for a in fields[2].split(","):
            if a:
                addrs.add(socket.inet_aton(a))
    if delay_ms < 0 or not 0 <= loss <= 100:
        raise ValueError(f"{path}: delay must be >= 0 and loss within 0..100, got {fields}")
    return delay_ms / 1000.0, loss / 100.0, addrs


def ipv4_dst(frame):
    """The IPv4 destination of a frame (after the vnet header), or None."""
    eth = VNET_HDR_LEN
    if len(frame) < eth + 14 + 20 or frame[eth + 12:eth + 14] != b"\x08\x00":
        return None
    return bytes(frame[eth + 14 + 16:eth + 14 + 20])


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    node_if, bridge_if, state_path, stats_path = sys.argv[1:]
    node_sock = open_socket(node_if)
    bridge_sock = open_socket(bridge_if)
    settings = [read_state(state_path)]
    counters = collections.Counter()
    reload_asked = [False]
    stop = [False]
    signal.signal(signal.SIGHUP, lambda *_: reload_asked.__setitem__(0, True))
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    signal.signal(signal.SIGINT, lambda *_: stop.__setitem__(0, True))
    queue = collections.deque()  # (due, frame): one delay for all, so due times are in order
    deadline = time.monotonic() + MAX_HOURS * 3600
    next_stats = 0.0

    def write_stats():
        tmp = stats_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(" ".join(f"{k}={counters[k]}" for k in
                             ("from_node", "to_node", "delayed", "dropped", "send_errors")) + "\n")
        os.replace(tmp, stats_path)

    def send(sock, frame):
        try:
            sock.send(frame)
        except OSError:  # link down (lab.sh cut), buffer full: the frame is lost, as on a wire
            counters["send_errors"] += 1

    while not stop[0] and time.monotonic() < deadline:
        now = time.monotonic()
        if reload_asked[0]:
            reload_asked[0] = False
            try:
                settings[0] = read_state(state_path)
            except (OSError, ValueError) as e:
                print(f"linkem: keeping the old settings: {e}", file=sys.stderr)
            next_stats = 0.0
        if now >= next_stats:
            write_stats()
            next_stats = now + 1.0
        while queue and queue[0][0] <= now:
            send(bridge_sock, queue.popleft()[1])
        timeout = min(1.0, max(0.0, queue[0][0] - now)) if queue else 1.0
        try:
            readable, _, _ = select.select([node_sock, bridge_sock], [], [], timeout)
        except InterruptedError:
            continue
        delay, loss, addrs = settings[0]
        for sock in readable:
            for _ in range(64):  # a burst at most, then the queue's due frames again
                try:
                    frame = sock.recv(MAX_FRAME)
                except BlockingIOError:
                    break
                except OSError:
                    break
                if sock is bridge_sock:
                    counters["to_node"] += 1
                    send(node_sock, frame)
                    continue
                counters["from_node"] += 1
                if loss > 0 and random.random() < loss:
                    counters["dropped"] += 1
                    continue
                if delay > 0 and ipv4_dst(frame) in addrs:
                    if len(queue) >= MAX_QUEUED:
                        counters["dropped"] += 1
                        continue
                    counters["delayed"] += 1
                    queue.append((time.monotonic() + delay, frame))
                else:
                    send(bridge_sock, frame)
    write_stats()


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Delays every packet of an NFQUEUE by a fixed time: the lab's stand-in for `tc netem delay` on
kernels built without netem. Plain Python (the nfnetlink_queue protocol over an AF_NETLINK
socket, no bindings to install). Each packet's verdict (accept) is given `--delay-ms` after it
was queued; the kernel holds the packet until then. Prints "ready" on stderr once bound.

    ip netns exec ROUTER python3 delay.py --queue 0 --delay-ms 150 &
    ip netns exec ROUTER iptables -A FORWARD -j NFQUEUE --queue-num 0 --queue-bypass
"""
import argparse
import heapq
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
NF_ACCEPT = 1
# Packets held at once: at 300 ms and a few Mbit/s of video, a few hundred.
QUEUE_MAXLEN = 8192


def attr(kind, payload):
    """One netlink attribute, padded to 4 bytes."""
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def message(msg_type, queue, attrs, seq=0):
    """An nfnetlink message of the queue subsystem for queue number `queue`."""
    # nfgenmsg: family, version, resource id (the queue number, big-endian).
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + b"".join(attrs)
    kind = (NFNL_SUBSYS_QUEUE << 8) | msg_type
    return struct.pack("=IHHII", 16 + len(body), kind, NLM_F_REQUEST, seq, 0) + body


def packet_ids(data):
    """The ids of the queued packets in one datagram of netlink messages."""
    offset = 0
    while offset + 16 <= len(data):
        length, kind, _flags, _seq, _pid = struct.unpack_from("=IHHII", data, offset)
        if length < 16:
            break
        if kind == NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", data, offset + 16)
            if error != 0:
                sys.exit(f"delay.py: netlink error {error}")
        elif kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            pos = offset + 16 + 4  # after nlmsghdr and nfgenmsg
            while pos + 4 <= offset + length:
                alen, atype = struct.unpack_from("=HH", data, pos)
                if alen < 4:
                    break
                if atype & 0x7FFF == NFQA_PACKET_HDR:
                    (packet_id,) = struct.unpack_from(">I", data, pos + 4)
                    yield packet_id
                pos += (alen + 3) & ~3
        offset += (length + 3) & ~3


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queue", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, required=True)
    args = parser.parse_args()
    delay = args.delay_ms / 1000

    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((0, 0))
    sock.send(message(NFQNL_MSG_CONFIG, args.queue,
                      [attr(NFQA_CFG_CMD, struct.pack("=BBH", NFQNL_CFG_CMD_BIND, 0, 0))]))
    # Only the metadata comes up (the packet id); the packet itself stays in the kernel.
    sock.send(message(NFQNL_MSG_CONFIG, args.queue,
                      [attr(NFQA_CFG_PARAMS, struct.pack(">IB", 0, NFQNL_COPY_META)),
                       attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack(">I", QUEUE_MAXLEN))]))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", file=sys.stderr, flush=True)

    due = []  # (release time, packet id), earliest first
    while True:
        timeout = max(0.0, due[0][0] - time.monotonic()) if due else None
        readable, _, _ = select.select([sock], [], [], timeout)
        if readable:
            data = sock.recv(1 << 16)
            arrived = time.monotonic()
            for packet_id in packet_ids(data):
                heapq.heappush(due, (arrived + delay, packet_id))
        now = time.monotonic()
        while due and due[0][0] <= now:
            _, packet_id = heapq.heappop(due)
            sock.send(message(NFQNL_MSG_VERDICT, args.queue,
                              [attr(NFQA_VERDICT_HDR, struct.pack(">II", NF_ACCEPT, packet_id))]))


if __name__ == "__main__":
    main()

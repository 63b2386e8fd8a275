# One IPv6 UDP datagram with a chosen packet size, hop limit and traffic
# class, and what came back: the lab's probe for the ICMPv6 errors a client
# receives (Lab::udp_probe6 runs it as `python3 -c`; std Rust has no
# IPV6_RECVERR).
#
#   udp_probe6.py DST PORT PACKET_SIZE HOP_LIMIT TCLASS TIMEOUT_S
#
# PACKET_SIZE is the whole IPv6 packet (40-byte header, 8-byte UDP header,
# payload), so 1400 puts 1,400 bytes on the wire. The datagram leaves
# unfragmented whatever path MTU the client has learned
# (IPV6_PMTUDISC_PROBE: the device MTU only, never local fragments), so
# each probe reaches the hop that must refuse it.
#
# Prints one line:
#   reply from=ADDR bytes=N               an answer (e.g. from udp-echo)
#   icmp6 type=T code=C info=I from=ADDR  an ICMPv6 error about it (the
#                                         kernel's sock_extended_err: info
#                                         is the MTU of a packet too big)
#   local errno=E info=I                  refused by the client's own stack
#   timeout                               nothing within TIMEOUT_S
import select
import socket
import struct
import sys

IPV6_RECVERR = 25
IPV6_MTU_DISCOVER = 23
IPV6_PMTUDISC_PROBE = 3
SO_EE_ORIGIN_LOCAL = 1
SO_EE_ORIGIN_ICMP6 = 3


def main():
    dst, port, size, hops, tclass, timeout = sys.argv[1:7]
    size, hops, tclass = int(size), int(hops), int(tclass)
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_PROBE)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, hops)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, tclass)
    s.connect((dst, int(port)))
    payload = bytes(i % 251 for i in range(max(size - 48, 0)))
    try:
        s.send(payload)
    except OSError as e:
        print(f"local errno={e.errno} info=0", flush=True)
        return
    p = select.poll()
    p.register(s, select.POLLIN | select.POLLERR)
    if not p.poll(float(timeout) * 1000):
        print("timeout", flush=True)
        return
    try:
        _, anc, _, _ = s.recvmsg(1, 512, socket.MSG_ERRQUEUE)
    except BlockingIOError:
        anc = []
    for level, kind, data in anc:
        if level != socket.IPPROTO_IPV6 or kind != IPV6_RECVERR or len(data) < 16:
            continue
        _errno, origin, typ, code, _pad, info, _data = struct.unpack("=IBBBBII", data[:16])
        if origin == SO_EE_ORIGIN_ICMP6 and len(data) >= 44:
            sender = socket.inet_ntop(socket.AF_INET6, data[24:40])
            print(f"icmp6 type={typ} code={code} info={info} from={sender}", flush=True)
        else:
            print(f"local errno={_errno} info={info}", flush=True)
        return
    try:
        got, sender = s.recvfrom(65536)
        print(f"reply from={sender[0]} bytes={len(got)}", flush=True)
    except OSError as e:
        print(f"error errno={e.errno}", flush=True)


main()
